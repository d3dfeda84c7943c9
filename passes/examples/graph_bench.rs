//! Compile and simulate one captured graph, timing each step (a profiling aid, not a test).
//!
//! ```text
//! cargo run --release -p dojo-passes --example graph_bench -- GRAPH.json [--mesh d1] [--plan naive] [--parallel none] [--egraph | --egraph-options JSON] [--runs 3] [--timing-only [--ops]] [--values] [--json]
//! ```
//!
//! `--plan naive` compiles with `lower-to-d1`'s naive baseline plan; `--parallel none` turns
//! off data parallelism over a multi-chip mesh's chips (`split-batch`). `--egraph-options
//! '{"epilogues": true}'` runs `egraph-optimize` with those options (the backend's
//! `egraph` option). `--json` (with `--timing-only`, one run) prints one JSON object
//! instead: the compile's wall time and step timings, and the Profile's simulated and
//! roofline seconds, efficiency, binding term and terms, cores used, FLOPs, instructions,
//! peak SRAM, host and copy bytes and the cores' mean busy seconds; or `{"error": ...}`
//! if the graph does not compile (`benchmarks/mapping.py` reads it).
//!
//! `--values` skips the reference `SimMesh::execute` beside each run, so a profiler sees the
//! compiled graph's runs only (the first computes values and the Profile, later ones values).
//!
//! With `--timing-only --ops`: simulated seconds summed per d1 op kind; `OPS_MATCH=reshard`
//! also lists each matching op's span, and `OP_EVENTS="d1.reshard %22"` that op's timeline
//! (its first 80 events, or `OP_EVENTS_N`); `BUSY_HIST=500` prints, per 500 us of
//! simulated time, the used cores' mean compute busy fraction and the op kinds it went to,
//! the mean injection port busy fraction and the DIP channels' mean busy fraction.
//! `CORE_EVENTS=row,col,t0,t1` lists one core's compute and port events between t0 and t1
//! us; `DIP_EVENTS=t0,t1` the DIP channels' transfers between t0 and t1 us. `DIP_X=4` times
//! a what-if Program with four times the DIP bandwidth (same compile). `LOAD_STATS=1`
//! prints, instead of timing, the core-to-core copy bytes per op kind (`COPY_TOP=reshard`:
//! also the ops copying most), the bytes stored and, per input, the bytes loaded (several
//! times its size: loaded whole by several parts).
//!
//! `GRAPH.json` is what `torch_dojo.capture.capture_json` writes (e.g. saved from a probe of
//! `backend.capture_json`). Prints the wall time of the driver's compile (and of each pass),
//! the Program's size and a checksum of its JSON (equal checksums: byte-identical Programs),
//! then of each simulated run on random inputs (integer inputs get zeros), and the checksum
//! of the outputs (equal checksums: bit-identical results).

use std::time::Instant;

use dojo_passes::driver::compile_graph;
use dojo_passes::interp::random_data;
use dojo_runtime::Device;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut path = None;
    let mut mesh = "d1".to_string();
    let mut runs = 3usize;
    let mut timing_only = false;
    let mut precision = "fp32".to_string();
    let mut egraph = "false".to_string();
    let mut ops = false;
    let mut values_only = false;
    let mut plan = "default".to_string();
    let mut parallel = "auto".to_string();
    let mut json_out = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--mesh" => mesh = it.next().expect("--mesh NAME").clone(),
            "--runs" => runs = it.next().and_then(|s| s.parse().ok()).expect("--runs N"),
            "--timing-only" => timing_only = true,
            "--precision" => precision = it.next().expect("--precision POLICY").clone(),
            "--egraph" => egraph = "true".to_string(),
            "--egraph-options" => egraph = it.next().expect("--egraph-options JSON").clone(),
            "--ops" => ops = true,
            "--values" => values_only = true,
            "--plan" => plan = it.next().expect("--plan default|naive").clone(),
            "--parallel" => parallel = it.next().expect("--parallel auto|none").clone(),
            "--json" => json_out = true,
            p => path = Some(p.to_string()),
        }
    }
    let path = path.expect("usage: graph_bench GRAPH.json [--mesh d1] [--precision fp32] [--egraph | --egraph-options JSON] [--runs N] [--timing-only [--ops]] [--values]");
    let json = std::fs::read_to_string(&path).expect("read graph");
    let options = format!(r#"{{"mesh": "{mesh}", "precision": "{precision}", "egraph": {egraph}, "plan": "{plan}", "parallel": "{parallel}"}}"#);

    let t0 = Instant::now();
    let graph = match compile_graph(&json, &options) {
        Ok(g) => g,
        Err(e) if json_out => {
            println!("{}", serde_json::json!({ "error": e.to_string() }));
            return;
        }
        Err(e) => {
            println!("compile failed: {e}");
            return;
        }
    };
    let compile_s = t0.elapsed().as_secs_f64();
    if std::env::var("LOAD_STATS").is_ok() {
        let prog = graph.program();
        let mut per: Vec<(u64, usize)> = vec![(0, 0); prog.inputs.len()];
        let mut st = 0u64;
        for i in &prog.instrs {
            match i {
                dojo_runtime::program::Instr::Load { input, src, .. } => {
                    per[*input].0 += src.sizes.iter().product::<usize>() as u64 * prog.inputs[*input].dtype.size_bytes();
                    per[*input].1 += 1;
                }
                dojo_runtime::program::Instr::Store { src, output, .. } => st += src.sizes.iter().product::<usize>() as u64 * prog.outputs[*output].dtype.size_bytes(),
                _ => {}
            }
        }
        // Core-to-core copy bytes (payload, payload x hops) per op, then per op kind.
        let mut per_op: std::collections::HashMap<Option<u32>, (u64, u64)> = Default::default();
        for (k, i) in prog.instrs.iter().enumerate() {
            if let dojo_runtime::program::Instr::Copy { src, dst, src_region, .. } = i {
                let (a, b) = (&prog.buffers[*src].core, &prog.buffers[*dst].core);
                if a != b {
                    let bytes = src_region.sizes.iter().product::<usize>() as u64 * prog.buffers[*src].dtype.size_bytes();
                    let e = per_op.entry(prog.instr_op.get(k).copied().flatten()).or_default();
                    e.0 += bytes;
                    e.1 += bytes * u64::from(a.row.abs_diff(b.row) + a.col.abs_diff(b.col));
                }
            }
        }
        let name = |o: Option<u32>| o.map_or("", |o| prog.op_names[o as usize].as_str());
        if let Ok(pat) = std::env::var("COPY_TOP") {
            let mut v: Vec<(&Option<u32>, &(u64, u64))> = per_op.iter().filter(|(o, _)| name(**o).contains(&pat)).collect();
            v.sort_by_key(|x| (std::cmp::Reverse(x.1 .0), *x.0));
            for (o, (b, _)) in v.iter().take(std::env::var("COPY_TOP_N").ok().and_then(|n| n.parse().ok()).unwrap_or(40)) {
                println!("  {:<24} {:9.1} MB", name(**o), *b as f64 / 1e6);
            }
        }
        let mut kinds: std::collections::BTreeMap<&str, (u64, u64)> = Default::default();
        for (o, (b, bh)) in &per_op {
            let e = kinds.entry(name(*o).split(' ').next().unwrap_or("")).or_default();
            e.0 += b;
            e.1 += bh;
        }
        for (k, (b, bh)) in &kinds {
            println!("copies {k:<16} {:9.2} GB  {:9.2} GB x hops", *b as f64 / 1e9, *bh as f64 / 1e9);
        }
        let mut v: Vec<(usize, (u64, usize))> = per.into_iter().enumerate().collect();
        v.sort_by_key(|x| std::cmp::Reverse(x.1 .0));
        println!("stores {:.3} GB", st as f64 / 1e9);
        for (k, (b, n)) in v.iter().take(40) {
            let t = &prog.inputs[*k];
            let sz = t.shape.iter().product::<usize>() as u64 * t.dtype.size_bytes();
            println!("input {k:4} {:?} {:.1} MB loaded {:.1} MB ({:.1}x) in {n} loads", t.shape, sz as f64 / 1e6, *b as f64 / 1e6, *b as f64 / sz as f64);
        }
        return;
    }
    // `DIP_X=4`: a what-if with four times the DIP bandwidth (copies the Program).
    let owned = std::env::var("DIP_X").ok().and_then(|x| x.parse::<f64>().ok()).map(|x| {
        let mut p = graph.program().clone();
        p.target.dip_hbm_bytes_per_s *= x;
        p
    });
    let program = owned.as_ref().unwrap_or(graph.program());
    if json_out {
        let t = Instant::now();
        let p = match dojo_runtime::SimMesh::timing_only().time(program) {
            Ok(p) => p,
            Err(e) => {
                println!("{}", serde_json::json!({ "error": e.to_string() }));
                return;
            }
        };
        let out = serde_json::json!({
            "compile_s": compile_s,
            "timings": graph.timings,
            "simulate_s": t.elapsed().as_secs_f64(),
            "simulated_s": p.simulated_seconds,
            "roofline_s": p.roofline_seconds,
            "roofline_efficiency": p.roofline_efficiency,
            "roofline_bound": p.roofline_bound,
            "cores_used": p.cores_used,
            "flops": p.flops,
            "instructions": p.instructions,
            "peak_sram_bytes": p.peak_sram_bytes,
            "host_bytes": p.host_bytes,
            "copy_bytes": p.copy_bytes,
            "mean_busy_s": p.busy_seconds_per_core.iter().map(|c| c.1).sum::<f64>() / p.busy_seconds_per_core.len().max(1) as f64,
            "roofline": p.roofline,
        });
        println!("{out}");
        return;
    }
    let program_sum = graph.program_json().bytes().fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
    println!(
        "compile {:.3} s (Program {} instructions, JSON {} bytes, checksum {program_sum:016x})",
        compile_s,
        graph.program().instrs.len(),
        graph.program_json().len()
    );
    for (stage, s) in &graph.timings {
        println!("  {:<16} {:8.2} ms", stage, s * 1e3);
    }
    for s in &graph.egraph_stats {
        println!("  {s}");
    }
    // Whether split-batch split the graph, and why not.
    if let Some((_, ir)) = graph.stages.last() {
        const KEY: &str = "dojo.split = \"";
        for note in ir.match_indices(KEY).filter_map(|(i, _)| ir[i + KEY.len()..].split('"').next()) {
            println!("  split: {}", note.chars().take(300).collect::<String>());
        }
    }

    let data: Vec<Vec<f32>> = program
        .inputs
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let n: usize = d.shape.iter().product();
            if d.dtype.is_int() {
                vec![0.0; n]
            } else {
                random_data(n, i as u64)
            }
        })
        .collect();
    let inputs: Vec<(&[usize], &[f32])> = program.inputs.iter().zip(&data).map(|(d, v)| (d.shape.as_slice(), v.as_slice())).collect();
    for r in 0..runs {
        let t = Instant::now();
        if timing_only {
            let p = dojo_runtime::SimMesh::timing_only().time(program).expect("time");
            println!("run {r}: {:.3} s timing-only (simulated {:.3e} s)", t.elapsed().as_secs_f64(), p.simulated_seconds);
            if ops {
                // Simulated seconds per op kind (summed over ops; they overlap in time).
                let mut kinds: std::collections::BTreeMap<String, (usize, f64)> = Default::default();
                for o in &p.ops {
                    let e = kinds.entry(o.name.split(' ').next().unwrap_or("").to_string()).or_default();
                    e.0 += 1;
                    e.1 += o.simulated_seconds;
                }
                if let Ok(w) = std::env::var("BUSY_HIST") {
                    // Per bucket of `w` us: the used cores' mean compute busy fraction (by op kind)
                    // and injection port busy fraction.
                    let w: f64 = w.parse::<f64>().unwrap_or(200.0) * 1e-6;
                    let nb = (p.simulated_seconds / w).ceil() as usize + 1;
                    let cores = p.cores_used.max(1) as f64;
                    let mut core = vec![0.0; nb];
                    let mut dma = vec![0.0; nb];
                    let mut dip = vec![0.0; nb];
                    let mut kinds: Vec<std::collections::BTreeMap<String, f64>> = vec![Default::default(); nb];
                    for e in &p.timeline {
                        // A DIP event ends when the data has arrived; its channel is busy until the latency before.
                        let lat = if matches!(e.unit, dojo_runtime::sim::Unit::Dip(_)) { program.target.host_latency_s } else { 0.0 };
                        let (a, b) = (e.start_s, e.end_s - lat);
                        for k in (a / w) as usize..=((b / w) as usize).min(nb - 1) {
                            let d = b.min((k + 1) as f64 * w) - a.max(k as f64 * w);
                            if d <= 0.0 {
                                continue;
                            }
                            match e.unit {
                                dojo_runtime::sim::Unit::Core(_) => {
                                    core[k] += d;
                                    let kind = e.op.map(|o| p.ops[o as usize].name.split(' ').next().unwrap_or("").to_string()).unwrap_or_default();
                                    *kinds[k].entry(kind).or_default() += d;
                                }
                                dojo_runtime::sim::Unit::Dma(_) => dma[k] += d,
                                dojo_runtime::sim::Unit::Dip(_) => dip[k] += d,
                            }
                        }
                    }
                    for k in 0..nb {
                        let mut top: Vec<(&String, &f64)> = kinds[k].iter().collect();
                        top.sort_by(|a, b| b.1.partial_cmp(a.1).unwrap());
                        let top: Vec<String> = top.iter().take(4).map(|(n, s)| format!("{}:{:.0}%", n.trim_start_matches("d1."), 100.0 * **s / (w * cores))).collect();
                        println!("  {:7.0} us  core {:5.1}%  port {:5.1}%  dip {:5.1}%  {}", k as f64 * w * 1e6, 100.0 * core[k] / (w * cores), 100.0 * dma[k] / (w * cores), 100.0 * dip[k] / (w * program.target.dips as f64), top.join(" "));
                    }
                }
                if let Ok(spec) = std::env::var("CORE_EVENTS") {
                    // `row,col,t0_us,t1_us`: that core's compute and port events in the window.
                    let v: Vec<f64> = spec.split(',').filter_map(|x| x.parse().ok()).collect();
                    if let [r, c, t0, t1] = v[..] {
                        for e in p.timeline.iter().filter(|e| e.end_s * 1e6 >= t0 && e.start_s * 1e6 <= t1) {
                            let at = match &e.unit {
                                dojo_runtime::sim::Unit::Core(id) | dojo_runtime::sim::Unit::Dma(id) => id.row == r as u32 && id.col == c as u32,
                                _ => false,
                            };
                            if at {
                                let op = e.op.map(|o| p.ops[o as usize].name.as_str()).unwrap_or("");
                                let unit = if matches!(e.unit, dojo_runtime::sim::Unit::Core(_)) { "core" } else { "port" };
                                println!("      {:9.3} .. {:9.3} {unit} {:<10} {op}", e.start_s * 1e6, e.end_s * 1e6, e.name);
                            }
                        }
                    }
                }
                if let Ok(spec) = std::env::var("DIP_EVENTS") {
                    // `t0_us,t1_us`: the DIP channels' transfers in the window.
                    let v: Vec<f64> = spec.split(',').filter_map(|x| x.parse().ok()).collect();
                    if let [t0, t1] = v[..] {
                        for e in p.timeline.iter().filter(|e| matches!(e.unit, dojo_runtime::sim::Unit::Dip(_)) && e.end_s * 1e6 >= t0 && e.start_s * 1e6 <= t1) {
                            let op = e.op.map(|o| p.ops[o as usize].name.as_str()).unwrap_or("");
                            println!("      {:9.3} .. {:9.3} {:?} {:<6} {} {op}", e.start_s * 1e6, e.end_s * 1e6, e.unit, e.name, e.instr);
                        }
                    }
                }
                if let Ok(pat) = std::env::var("OPS_MATCH") {
                    for o in p.ops.iter().filter(|o| o.name.contains(&pat)) {
                        println!(
                            "    {:<24} {:9.3} .. {:9.3} us  {:8.3} us  {} instrs  {:.3e} flops  {} cores  roofline {:.3} us {:?}  eff {:.2}",
                            o.name,
                            o.start_s * 1e6,
                            o.end_s * 1e6,
                            o.simulated_seconds * 1e6,
                            o.instructions,
                            o.flops as f64,
                            o.cores,
                            o.roofline.seconds * 1e6,
                            o.roofline.binding,
                            o.efficiency.unwrap_or(0.0)
                        );
                    }
                    if let Ok(name) = std::env::var("OP_EVENTS") {
                        let k = p.ops.iter().position(|o| o.name == name);
                        for e in p.timeline.iter().filter(|e| e.op.map(|o| o as usize) == k).take(std::env::var("OP_EVENTS_N").ok().and_then(|n| n.parse().ok()).unwrap_or(80)) {
                            println!("      {:7} {:<10} {:?} {:9.3} .. {:9.3}", e.instr, e.name, e.unit, e.start_s * 1e6, e.end_s * 1e6);
                        }
                    }
                }
                for (k, (n, s)) in kinds {
                    println!("  {k:<20} {n:5} ops {:10.3} us", s * 1e6);
                }
            }
            continue;
        }
        if !values_only {
            let (outs, _) = dojo_runtime::SimMesh::new().execute(program, &inputs).expect("execute");
            println!("  SimMesh::execute {:.3} s ({} outputs)", t.elapsed().as_secs_f64(), outs.len());
        }
        let t = Instant::now();
        let result = graph.run(&inputs).expect("run");
        let wall = t.elapsed().as_secs_f64();
        let mut sum = 0u64;
        for o in &result.outputs {
            for x in &o.data {
                sum = sum.wrapping_mul(31).wrapping_add(u64::from(x.to_bits()));
            }
        }
        println!("run {r}: {:.4} s (simulated {:.3e} s, checksum {sum:016x})", wall, result.profile.simulated_seconds);
    }
}
