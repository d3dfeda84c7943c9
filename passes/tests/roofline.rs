//! Simulated time never beats the roofline: many random matmul / elementwise / reduction
//! graphs, compiled through the real pipeline (`lower-to-d1`, `dce`, emit) on several
//! presets, timed on the simulator; every op of the emitted Program (its provenance) and the
//! Program as a whole must take at least its roofline bound. Also: how the lowering maps a
//! GEMM (replicas multicast, a result stored in row blocks, the 2048 bf16 sweep goal).

use dojo_compiler::{parse_module, Module};
use dojo_passes::emit::emit_program;
use dojo_passes::registry::build_pipeline;
use dojo_runtime::{Device, Profile, Program, SimMesh};

/// Relative slack for sums computed in different orders.
const REL: f64 = 1e-9;
/// Random graphs compiled and timed.
const CASES: usize = 150;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next() % (hi - lo + 1) as u64) as usize
    }
}

fn ty(shape: &[usize]) -> String {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    format!("tensor<{}xf32>", dims.join("x"))
}

/// `C = A @ B`, `A` `m x k` and `B` `k x n` of element type `elem`, `C` f32, as `dojo` IR.
fn gemm(m: usize, k: usize, n: usize, elem: &str) -> String {
    let (ta, tb, tr) = (format!("tensor<{m}x{k}x{elem}>"), format!("tensor<{k}x{n}x{elem}>"), format!("tensor<{m}x{n}xf32>"));
    format!(
        r#""builtin.module"() ({{
  "func.func"() <{{function_type = ({ta}, {tb}) -> ({tr}), sym_name = "f"}}> ({{
  ^bb0(%a: {ta}, %b: {tb}):
    %0 = "dojo.matmul"(%a, %b) : ({ta}, {tb}) -> {tr}
    "func.return"(%0) : ({tr}) -> ()
  }}) : () -> ()
}}) : () -> ()
"#
    )
}

/// `relu(a @ b + c)`, its row sums and its column maxima, as `dojo` IR; with `batch`, a
/// batched matmul and a reduction over the batch.
fn graph(m: usize, k: usize, n: usize, batch: Option<usize>) -> String {
    let lead: Vec<usize> = batch.into_iter().collect();
    let sh = |r: usize, c: usize| ty(&[lead.clone(), vec![r, c]].concat());
    let (ta, tb, tc) = (sh(m, k), sh(k, n), sh(m, n));
    let rank = lead.len() + 2;
    let rows = ty(&[lead.clone(), vec![m]].concat());
    let cols = ty(&[lead.clone(), vec![1, n]].concat());
    format!(
        r#""builtin.module"() ({{
  "func.func"() <{{function_type = ({ta}, {tb}, {tc}) -> ({tc}, {rows}, {cols}), sym_name = "f"}}> ({{
  ^bb0(%a: {ta}, %b: {tb}, %c: {tc}):
    %0 = "dojo.matmul"(%a, %b) : ({ta}, {tb}) -> {tc}
    %1 = "dojo.add"(%0, %c) : ({tc}, {tc}) -> {tc}
    %2 = "dojo.relu"(%1) : ({tc}) -> {tc}
    %3 = "dojo.reduce_sum"(%2) {{dims = array<i64: {last}>, keepdim = false}} : ({tc}) -> {rows}
    %4 = "dojo.reduce_max"(%1) {{dims = array<i64: {prev}>, keepdim = true}} : ({tc}) -> {cols}
    "func.return"(%2, %3, %4) : ({tc}, {rows}, {cols}) -> ()
  }}) : () -> ()
}}) : () -> ()
"#,
        last = rank - 1,
        prev = rank - 2,
    )
}

/// Lowers `dojo` IR text for `mesh` and emits the Program (`None` if it does not fit).
fn compile(ir: &str, mesh: &str) -> Option<Program> {
    let mut module = parse_module(ir).expect("parses");
    let mut pm = build_pipeline(&format!("lower-to-d1{{mesh={mesh}}},dce")).unwrap();
    pm.keep_ir(false);
    match pm.run(&mut module).1 {
        Ok(()) => {}
        Err(dojo_compiler::PassError::Capacity(_)) => return None,
        Err(e) => panic!("{mesh}: {e}\n{ir}"),
    }
    Some(emit_program(&module, None).expect("emits"))
}

fn check(prof: &Profile, what: &str) {
    assert!(prof.simulated_seconds > 0.0, "{what}");
    assert!(
        prof.simulated_seconds >= prof.roofline_seconds * (1.0 - REL),
        "{what}: simulated {} < roofline {} {:?}",
        prof.simulated_seconds,
        prof.roofline_seconds,
        prof.roofline
    );
    assert!(!prof.ops.is_empty(), "{what}: the emitted Program has provenance");
    for op in &prof.ops {
        assert!(
            op.simulated_seconds >= op.roofline.seconds * (1.0 - REL),
            "{what}: op {} simulated {} < roofline {} {:?}",
            op.name,
            op.simulated_seconds,
            op.roofline.seconds,
            op.roofline
        );
    }
}

#[test]
fn compiled_graphs_never_beat_their_roofline() {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let presets = ["core", "d1:4x4", "d1:9x9", "d1", "tile"];
    let (mut compiled, mut skipped) = (0, 0);
    let mut bound_names = std::collections::BTreeSet::new();
    for case in 0..CASES {
        let mesh = presets[case % presets.len()];
        let max = if mesh == "core" { 40 } else { 300 };
        let (m, k, n) = (rng.range(1, max), rng.range(1, max), rng.range(1, max));
        let batch = (rng.next() % 4 == 0).then(|| rng.range(1, 3));
        let ir = graph(m, k, n, batch);
        let what = format!("case {case}: {m}x{k}x{n} batch {batch:?} on {mesh}");
        let Some(p) = compile(&ir, mesh) else {
            skipped += 1;
            continue;
        };
        compiled += 1;
        let prof = SimMesh::timing_only().time(&p).unwrap_or_else(|e| panic!("{what}: {e}"));
        check(&prof, &what);
        bound_names.extend(prof.ops.iter().filter_map(|o| o.roofline.binding));
        // Labels name the d1 ops, e.g. "d1.matmul %12".
        assert!(prof.ops.iter().any(|o| o.name.starts_with("d1.matmul %")), "{what}");
        if m * k * n <= 64 * 64 * 64 {
            // The functional run gives the same Profile.
            let data: Vec<Vec<f32>> =
                p.inputs.iter().map(|t| vec![0.5; t.shape.iter().product()]).collect();
            let views: Vec<(&[usize], &[f32])> =
                p.inputs.iter().zip(&data).map(|(t, d)| (t.shape.as_slice(), d.as_slice())).collect();
            let (_, full) = SimMesh::new().execute(&p, &views).unwrap();
            assert_eq!(full, prof, "{what}");
        }
    }
    eprintln!("{compiled} compiled, {skipped} did not fit; binding terms: {bound_names:?}");
    assert!(compiled >= CASES * 9 / 10, "only {compiled} of {CASES} compiled ({skipped} did not fit)");
    assert!(bound_names.len() >= 3, "{bound_names:?}");
}

#[test]
fn graphs_compile_and_time_on_a_tray_and_an_exapod() {
    for mesh in ["tray", "exapod"] {
        let p = compile(&graph(64, 96, 80, None), mesh).expect("fits");
        let prof = SimMesh::timing_only().time(&p).unwrap();
        check(&prof, mesh);
        assert!(prof.cores_used <= 256, "{mesh}: the default lowering uses one 16x16 block");
    }
}

/// Replicated operands are multicast, not fetched again: on the random graphs, no box of a
/// host input is loaded twice (its replicas copy it over the mesh), and within one reshard no
/// core sends more copies than a gather plus the rounds of a halving tree over the largest
/// replica group need (a core used to send its box to every replica, one after another).
#[test]
fn replicas_are_loaded_once_and_multicast_by_a_tree() {
    use dojo_runtime::Instr;
    use std::collections::{BTreeMap, BTreeSet};
    let mut rng = Rng(7);
    for case in 0..20 {
        let (m, k, n) = (rng.range(1, 300), rng.range(1, 300), rng.range(1, 300));
        let ir = graph(m, k, n, None);
        let Some(p) = compile(&ir, "d1") else { continue };
        let mut loaded = BTreeSet::new();
        for i in &p.instrs {
            if let Instr::Load { input, src, .. } = i {
                assert!(loaded.insert((*input, format!("{src:?}"))), "case {case} ({m}x{k}x{n}): host box {src:?} of input {input} loaded twice");
            }
        }
        // Copies each core sends per compiler op (provenance), at most 16 + log2(256) + 1.
        let mut sent: BTreeMap<(u32, String), usize> = BTreeMap::new();
        for (idx, i) in p.instrs.iter().enumerate() {
            if let Instr::Copy { src, dst, .. } = i {
                if p.buffers[*src].core != p.buffers[*dst].core {
                    let c = &p.buffers[*src].core;
                    let op = p.instr_op.get(idx).copied().flatten().unwrap_or(u32::MAX);
                    *sent.entry((op, format!("{c:?}"))).or_default() += 1;
                }
            }
        }
        let worst = sent.values().copied().max().unwrap_or(0);
        assert!(worst <= 25, "case {case} ({m}x{k}x{n}): a core sends {worst} copies for one op");
    }
}

/// A GEMM whose result only goes to the host is computed in row blocks, each stored while the
/// next one computes: on bf16 operands (bf16 values) the Program passes validation, each
/// output element is stored exactly once, the result equals the reference interpreter's (the
/// k-order loop) bit for bit, and the first block's stores start before the last matmul
/// kernel ends. With the result also read on the mesh it is one block, with the same bits.
#[test]
fn a_gemm_result_is_stored_in_row_blocks_bit_for_bit() {
    use dojo_passes::interp::{self, Array};
    use dojo_runtime::Instr;
    let (m, k, n) = (256, 1024, 1024);
    let gemm = |extra_use: bool| {
        let (ta, tb, tr) = (format!("tensor<{m}x{k}xbf16>"), format!("tensor<{k}x{n}xbf16>"), format!("tensor<{m}x{n}xf32>"));
        let (results, body, vals) = if extra_use {
            (format!("{tr}, {tr}"), format!("%1 = \"dojo.neg\"(%0) : ({tr}) -> {tr}"), "%0, %1")
        } else {
            (tr.clone(), String::new(), "%0")
        };
        format!(
            r#""builtin.module"() ({{
  "func.func"() <{{function_type = ({ta}, {tb}) -> ({results}), sym_name = "f"}}> ({{
  ^bb0(%a: {ta}, %b: {tb}):
    %0 = "dojo.matmul"(%a, %b) : ({ta}, {tb}) -> {tr}
    {body}
    "func.return"({vals}) : ({results}) -> ()
  }}) : () -> ()
}}) : () -> ()
"#
        )
    };
    let ir = gemm(false);
    let p = compile(&ir, "d1:4x4").expect("fits");
    p.validate().expect("valid Program");
    let blocks = {
        let mut module = parse_module(&ir).unwrap();
        build_pipeline("lower-to-d1{mesh=d1:4x4}").unwrap().run(&mut module).1.unwrap();
        let store = module.funcs[0].ops.iter().find(|o| o.name == "d1.store").expect("a store").clone();
        assert!(store.attr("dim").is_some(), "the result is stored in row blocks");
        store.operands.len()
    };
    assert!(blocks >= 2, "{blocks} blocks");

    // Every element of the result stored once.
    let mut written = vec![0u8; m * n];
    for i in &p.instrs {
        if let Instr::Store { output: 0, dst, .. } = i {
            let (o, s) = (&dst.offsets, &dst.sizes);
            for r in o[0]..o[0] + s[0] {
                for c in o[1]..o[1] + s[1] {
                    written[r * n + c] += 1;
                }
            }
        }
    }
    assert!(written.iter().all(|&w| w == 1), "each element stored exactly once");

    // Bit for bit the interpreter's result on bf16 values.
    let bf16 = |v: Vec<f32>| -> Vec<f32> { v.into_iter().map(|x| f32::from_bits(x.to_bits() & 0xffff_0000)).collect() };
    let inputs = [Array { shape: vec![m, k], data: bf16(interp::random_data(m * k, 1)) }, Array { shape: vec![k, n], data: bf16(interp::random_data(k * n, 2)) }];
    let mut reference = parse_module(&ir).unwrap();
    let want = interp::run(&reference.funcs.remove(0), &inputs).expect("interpreter");
    let views: Vec<(&[usize], &[f32])> = inputs.iter().map(|a| (a.shape.as_slice(), a.data.as_slice())).collect();
    let (got, prof) = SimMesh::new().execute(&p, &views).expect("runs");
    assert_eq!(got[0].shape, want[0].shape);
    let differ = got[0].data.iter().zip(&want[0].data).filter(|(x, y)| x.to_bits() != y.to_bits()).count();
    assert_eq!(differ, 0, "{differ} elements differ from the reference");

    // The first block's stores overlap the later blocks' compute.
    let first_store = prof.timeline.iter().filter(|e| e.name == "Store").map(|e| e.start_s).fold(f64::INFINITY, f64::min);
    let last_matmul = prof.timeline.iter().filter(|e| e.name == "MatMul").map(|e| e.end_s).fold(0.0, f64::max);
    assert!(first_store < last_matmul, "first store at {first_store}, last matmul ends at {last_matmul}");
    check(&prof, "blocked GEMM");

    // Read on the mesh too, the result is one block.
    let whole = compile(&gemm(true), "d1:4x4").expect("fits");
    let first_store = whole.instrs.iter().position(|i| matches!(i, Instr::Store { .. }));
    let last_matmul = whole.instrs.iter().rposition(|i| matches!(i, Instr::Kernel { op: dojo_runtime::KernelOp::MatMul { .. }, .. }));
    assert!(first_store > last_matmul, "one block: stores after the last matmul");
    let (got_whole, _) = SimMesh::new().execute(&whole, &views).expect("runs");
    assert!(got_whole[0].data.iter().zip(&got[0].data).all(|(x, y)| x.to_bits() == y.to_bits()), "same bits in one block");
}


/// A GEMM whose operands and result do not fit in SRAM beside each other (here 4 MiB of `a`
/// and of `b` on 2 x 2 cores) is computed in row blocks with `b`'s panels loaded again from
/// the host for every block: it compiles (it did not before), the Program passes validation
/// (no core's SRAM overflows), `b` comes through the DIP once per block, each output element
/// is stored once, and the result equals the reference interpreter's bit for bit. A 1024^3
/// GEMM fits one core so.
#[test]
fn a_gemm_too_large_for_sram_streams_b_for_every_row_block_bit_for_bit() {
    use dojo_passes::interp::{self, Array};
    use dojo_runtime::Instr;
    let (m, k, n) = (128, 8192, 128);
    let ir = gemm(m, k, n, "f32");
    let p = compile(&ir, "d1:2x2").expect("fits in row blocks");
    p.validate().expect("valid Program");
    let mut module = parse_module(&ir).unwrap();
    build_pipeline("lower-to-d1{mesh=d1:2x2}").unwrap().run(&mut module).1.unwrap();
    let store = module.funcs[0].ops.iter().find(|o| o.name == "d1.store").expect("a store").clone();
    assert!(store.attr("dim").is_some(), "the result is stored in row blocks");
    let blocks = store.operands.len();
    assert!(blocks >= 2, "{blocks} blocks");

    // `b` loaded once per block (each element of it `blocks` times, no more); `a` once.
    let mut loaded = [vec![0usize; m * k], vec![0usize; k * n]];
    let mut written = vec![0u8; m * n];
    for i in &p.instrs {
        match i {
            Instr::Load { input, src, .. } => {
                let cols = [k, n][*input];
                for r in src.offsets[0]..src.offsets[0] + src.sizes[0] {
                    for c in src.offsets[1]..src.offsets[1] + src.sizes[1] {
                        loaded[*input][r * cols + c] += 1;
                    }
                }
            }
            Instr::Store { output: 0, dst, .. } => {
                for r in dst.offsets[0]..dst.offsets[0] + dst.sizes[0] {
                    for c in dst.offsets[1]..dst.offsets[1] + dst.sizes[1] {
                        written[r * n + c] += 1;
                    }
                }
            }
            _ => {}
        }
    }
    assert!(loaded[0].iter().all(|&x| x == 1), "each element of a loaded once");
    assert!(loaded[1].iter().all(|&x| x == blocks), "each element of b loaded once per block ({blocks})");
    assert!(written.iter().all(|&w| w == 1), "each element stored exactly once");

    let inputs = [Array { shape: vec![m, k], data: interp::random_data(m * k, 3) }, Array { shape: vec![k, n], data: interp::random_data(k * n, 4) }];
    let mut reference = parse_module(&ir).unwrap();
    let want = interp::run(&reference.funcs.remove(0), &inputs).expect("interpreter");
    let views: Vec<(&[usize], &[f32])> = inputs.iter().map(|a| (a.shape.as_slice(), a.data.as_slice())).collect();
    let (got, prof) = SimMesh::new().execute(&p, &views).expect("runs");
    let differ = got[0].data.iter().zip(&want[0].data).filter(|(x, y)| x.to_bits() != y.to_bits()).count();
    assert_eq!(differ, 0, "{differ} elements differ from the reference");
    check(&prof, "GEMM with b restreamed");

    // On one core, in blocks of 8 rows (more than 64 of them in some schedules the lowering
    // weighs), timed.
    let p = compile(&gemm(1024, 1024, 1024, "f32"), "core").expect("fits one core in row blocks");
    p.validate().expect("valid Program");
    check(&SimMesh::timing_only().time(&p).unwrap(), "1024^3 GEMM on one core");
}

/// The BF16 GEMM of the roofline sweep at M = N = K = 2048 on `d1` (issue 5's goal: at least
/// 85% of the roofline): timing-only, so deterministic.
#[test]
fn bf16_gemm_2048_on_d1_reaches_85_percent_of_its_roofline() {
    let p = compile(&gemm(2048, 2048, 2048, "bf16"), "d1").expect("fits");
    let prof = SimMesh::timing_only().time(&p).unwrap();
    check(&prof, "2048 bf16 GEMM");
    let eff = prof.roofline_efficiency.unwrap_or(0.0);
    assert!(eff >= 0.85, "{:.1}% of the roofline ({} s simulated)", 100.0 * eff, prof.simulated_seconds);
}

/// On a multi-chip target a large tensor spreads over the usable grid across chips (rows and
/// columns holding harvested sites left out), with the same bits as on one chip; small
/// graphs keep to one chip (see `graphs_compile_and_time_on_a_tray_and_an_exapod`).
#[test]
fn a_large_tensor_spreads_over_the_chips_of_a_tile() {
    use dojo_runtime::Target;
    use std::collections::BTreeSet;
    let ir = graph(2048, 32, 2048, None);
    let on_tile = compile(&ir, "tile").expect("fits a tile");
    let on_d1 = compile(&ir, "d1").expect("fits a D1");
    let tile = Target::preset("tile").unwrap();
    let cores: BTreeSet<_> = on_tile.buffers.iter().map(|b| b.core.clone()).collect();
    let chips: BTreeSet<_> = cores.iter().map(|c| tile.chip_of(c)).collect();
    assert!(cores.len() > 354 && chips.len() > 1, "{} cores on {} chips", cores.len(), chips.len());
    assert!(cores.iter().all(|c| tile.is_enabled(c)));
    let prof = SimMesh::timing_only().time(&on_tile).unwrap();
    check(&prof, "2048x32x2048 on tile");
    let d1_prof = SimMesh::timing_only().time(&on_d1).unwrap();
    assert!(prof.simulated_seconds < d1_prof.simulated_seconds, "tile {} s, d1 {} s", prof.simulated_seconds, d1_prof.simulated_seconds);

    let mut rng = Rng(3);
    let data: Vec<Vec<f32>> = on_tile
        .inputs
        .iter()
        .map(|t| (0..t.shape.iter().product::<usize>()).map(|_| (rng.next() % 1000) as f32 / 500.0 - 1.0).collect())
        .collect();
    let views: Vec<(&[usize], &[f32])> = on_tile.inputs.iter().zip(&data).map(|(t, d)| (t.shape.as_slice(), d.as_slice())).collect();
    let (tile_out, _) = SimMesh::new().execute(&on_tile, &views).unwrap();
    let (d1_out, _) = SimMesh::new().execute(&on_d1, &views).unwrap();
    // relu(a @ b + c) bit for bit (k order), its row sums (split differently: summed in
    // another order) within f32 rounding, its column maxima exactly.
    for (i, (a, b)) in tile_out.iter().zip(&d1_out).enumerate() {
        for (x, y) in a.data.iter().zip(&b.data) {
            let tol = if i == 1 { 1e-5 * y.abs().max(1.0) } else { 0.0 };
            assert!((x - y).abs() <= tol, "result {i}: tile {x} vs d1 {y}");
        }
    }
}

/// An embedding table too large to copy to every core (GPT-2's 50257 x 768 on a tile) is split
/// by rows: each core looks up the ids in its part, and the parts are summed. Same values as
/// a plain lookup (ids at the parts' edges included); an id outside the table is an error.
#[test]
fn a_large_embedding_table_is_split_by_rows() {
    let (v, d) = (20000usize, 64usize);
    let ids_shape = [2usize, 9];
    let ir = format!(
        r#""builtin.module"() ({{
  "func.func"() <{{function_type = (tensor<{v}x{d}xf32>, tensor<2x9xi64>) -> (tensor<2x9x{d}xf32>), sym_name = "f"}}> ({{
  ^bb0(%t: tensor<{v}x{d}xf32>, %i: tensor<2x9xi64>):
    %0 = "dojo.embedding"(%t, %i) : (tensor<{v}x{d}xf32>, tensor<2x9xi64>) -> tensor<2x9x{d}xf32>
    "func.return"(%0) : (tensor<2x9x{d}xf32>) -> ()
  }}) : () -> ()
}}) : () -> ()
"#
    );
    let mut module = parse_module(&ir).unwrap();
    build_pipeline("lower-to-d1{mesh=d1},dce").unwrap().run(&mut module).1.unwrap();
    let parts = module.funcs[0].ops.iter().find_map(|o| o.attr("vocab_parts").and_then(dojo_compiler::Attr::as_int)).expect("split by rows");
    assert_eq!(parts, 3, "20000 rows x 8 columns per core: 3 parts of at most 288 KiB");
    let p = emit_program(&module, None).unwrap();
    let table: Vec<f32> = (0..v * d).map(|k| (k % 9973) as f32 * 0.25 - 7.0).collect();
    // The first and last rows of every part, and a few others.
    let ids: Vec<f32> = [0, 6666, 6667, 13333, 13334, 19999, 1, 4242, 17000, 0, 19999, 6667, 123, 9999, 10000, 15000, 2, 3].map(|x| x as f32).to_vec();
    assert_eq!(ids.len(), ids_shape.iter().product::<usize>());
    let (out, _) = SimMesh::new().execute(&p, &[(&[v, d], &table), (&ids_shape, &ids)]).unwrap();
    let want: Vec<f32> = ids.iter().flat_map(|&i| table[i as usize * d..(i as usize + 1) * d].to_vec()).collect();
    assert!(out[0].data.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()), "the parts summed differ from the lookup");

    let mut bad = ids.clone();
    bad[5] = v as f32;
    let err = SimMesh::new().execute(&p, &[(&[v, d], &table), (&ids_shape, &bad)]).unwrap_err().to_string();
    assert!(err.contains("out of range for 20000 rows"), "{err}");
}

/// A matmul that would compute for long on one chip's 16 x 16 block spreads over the chips of
/// a tile even when its result is small (256 x 256 here: 1 KiB shards, but 0.26 ms of compute
/// on 256 cores), and is faster for it.
#[test]
fn a_long_matmul_spreads_over_the_chips_of_a_tile() {
    use dojo_runtime::Target;
    use std::collections::BTreeSet;
    let ir = graph(256, 32768, 256, None);
    let p = compile(&ir, "tile").expect("fits a tile");
    let tile = Target::preset("tile").unwrap();
    let mm_cores: BTreeSet<_> = p
        .instrs
        .iter()
        .filter_map(|i| match i {
            dojo_runtime::Instr::Kernel { op: dojo_runtime::KernelOp::MatMul { .. }, output, .. } => Some(p.buffers[*output].core.clone()),
            _ => None,
        })
        .collect();
    let chips: BTreeSet<_> = mm_cores.iter().map(|c| tile.chip_of(c)).collect();
    assert!(mm_cores.len() > 354 && chips.len() > 1, "matmul on {} cores of {} chips", mm_cores.len(), chips.len());
    let prof = SimMesh::timing_only().time(&p).unwrap();
    check(&prof, "256x32768x256 on tile");
    let d1 = SimMesh::timing_only().time(&compile(&ir, "d1").expect("fits a D1")).unwrap();
    assert!(prof.simulated_seconds < d1.simulated_seconds, "tile {} s, d1 {} s", prof.simulated_seconds, d1.simulated_seconds);
}

#[test]
fn a_reduction_over_both_axes_of_a_tile_gathers_one_axis_at_a_time() {
    // A batch norm's channel sums at resnet50's batch 32: the image's rows and columns split
    // over the tile's 85 x 95 usable cores; 8075 partials of 64 channels would be 2 MB on one
    // core (more than its SRAM); a row of them at a time is 24 KB.
    let (x, y) = ("tensor<32x64x112x112xf32>", "tensor<64xf32>");
    let ir = format!(
        r#""builtin.module"() ({{
  "func.func"() <{{function_type = ({x}) -> ({y}), sym_name = "f"}}> ({{
  ^bb0(%x: {x}):
    %0 = "dojo.reduce_sum"(%x) {{dims = array<i64: 0, 2, 3>, keepdim = false}} : ({x}) -> {y}
    "func.return"(%0) : ({y}) -> ()
  }}) : () -> ()
}}) : () -> ()"#
    );
    let p = compile(&ir, "tile").expect("fits a tile");
    let prof = SimMesh::timing_only().time(&p).expect("fits every core's SRAM");
    assert!(prof.cores_used > 4000, "{} cores", prof.cores_used);
    check(&prof, "channel sums of 32x64x112x112 on tile");
}

#[test]
fn a_convolutions_input_spreads_over_a_tile_before_its_taps() {
    // resnet50's 3x3 convolutions at batch 4: the columns (29 MB) spread over the chips. The
    // input (3.5 MB) spreads first, over its batch and channels (the dims no tap cuts), so the
    // taps and their concat are local. Left on the 16 x 16 block (and its taps with it), at
    // batch 8 it overflowed core (0,0)'s SRAM.
    let (_, prof) = tile_conv_3x3(4);
    assert!(prof.cores_used > 2000, "{} cores", prof.cores_used);
    check(&prof, "3x3 convolution of 4x64x56x56 on tile");
}

#[test]
fn a_convolution_too_large_for_its_columns_runs_tap_by_tap_on_a_tile() {
    // At batch 8 the columns would take 58 MB: the forward runs tap by tap, each tap's matmul
    // adding to the sum so far, and fits every core of one chip's 16 x 16 block.
    let (module, prof) = tile_conv_3x3(8);
    let sums = module.funcs[0].ops.iter().filter(|o| o.name == "d1.matmul" && o.attr("epilogue").is_some()).count();
    assert!(sums >= 8, "{sums} matmuls add to a sum: not tap by tap");
    assert!(prof.cores_used >= 256, "{} cores", prof.cores_used);
    check(&prof, "3x3 convolution of 8x64x56x56 on tile");
}

/// A ReLU then a 64-channel 3x3 convolution of `n x 64 x 56 x 56` (resnet50's layer 1),
/// lowered for `tile` and timed.
fn tile_conv_3x3(n: usize) -> (Module, Profile) {
    let (x, w) = (format!("tensor<{n}x64x56x56xf32>"), "tensor<64x64x3x3xf32>");
    let y = &x;
    let ir = format!(
        r#""builtin.module"() ({{
  "func.func"() <{{function_type = ({x}, {w}) -> ({y}), sym_name = "f"}}> ({{
  ^bb0(%x: {x}, %w: {w}):
    %0 = "aten.relu.default"(%x) : ({x}) -> {x}
    %1 = "aten.convolution.default"(%0, %w) {{dilation = array<i64: 1, 1>, groups = 1 : i64, output_padding = array<i64: 0, 0>, padding = array<i64: 1, 1>, stride = array<i64: 1, 1>, transposed = false}} : ({x}, {w}) -> {y}
    "func.return"(%1) : ({y}) -> ()
  }}) : () -> ()
}}) : () -> ()"#
    );
    let mut module = parse_module(&ir).expect("parses");
    let pm = build_pipeline("legalize-aten,dce,lower-to-d1{mesh=tile},dce").unwrap();
    pm.run(&mut module).1.expect("lowers");
    let p = emit_program(&module, None).expect("emits");
    let prof = SimMesh::timing_only().time(&p).expect("fits every core's SRAM");
    (module, prof)
}
