//! Timing model v2 and the roofline: contention, chip/tile edges, the disabled-core and SRAM
//! checks of the simulator, timing-only runs, and the property that simulated time never
//! beats the roofline (per op and per Program) on many random Programs and targets.

mod common;

use common::*;
use dojo_runtime::*;

/// Relative slack for comparing sums computed in different orders.
const REL: f64 = 1e-9;

/// Simulated time >= roofline for the Program and for every op of `prof`.
fn assert_never_beats_roofline(prof: &Profile, what: &str) {
    assert!(
        prof.simulated_seconds >= prof.roofline_seconds * (1.0 - REL),
        "{what}: program simulated {} < roofline {} ({:?})",
        prof.simulated_seconds,
        prof.roofline_seconds,
        prof.roofline
    );
    assert_eq!(prof.roofline_seconds, prof.roofline.seconds);
    if let Some(e) = prof.roofline_efficiency {
        assert!(e > 0.0 && e <= 1.0 + REL, "{what}: efficiency {e}");
    }
    for op in &prof.ops {
        assert!(
            op.simulated_seconds >= op.roofline.seconds * (1.0 - REL),
            "{what}: op {} simulated {} < roofline {} ({:?})",
            op.name,
            op.simulated_seconds,
            op.roofline.seconds,
            op.roofline
        );
        let r = &op.roofline;
        let terms = [
            r.compute_s,
            r.sram_s,
            r.injection_s,
            r.bisection_s,
            r.latency_s,
            r.host_s,
        ];
        assert_eq!(r.seconds, terms.iter().copied().fold(0.0, f64::max));
        assert!(terms.iter().all(|x| x.is_finite() && *x >= 0.0), "{r:?}");
    }
}

fn copy(b: &mut Builder, src: BufId, dst: BufId, n: usize) {
    b.push(Instr::Copy {
        src,
        src_region: Region::full(&[n]),
        dst,
        dst_region: Region::full(&[n]),
    });
}

/// A Program on `mesh` with one copy of `n` f32 per (from, to) pair, all independent.
/// A (from, to) pair of core coordinates.
type Pair = ((u32, u32), (u32, u32));

/// Host inputs: (shape, data) each.
type Inputs = Vec<(Vec<usize>, Vec<f32>)>;

fn copies(mesh: &str, pairs: &[Pair], n: usize) -> Profile {
    let mut b = Builder::new(mesh);
    for &(from, to) in pairs {
        let x = b.buf(from, &[n]);
        let y = b.buf(to, &[n]);
        copy(&mut b, x, y, n);
    }
    SimMesh::timing_only().time(&b.p).unwrap()
}

#[test]
fn transfers_sharing_a_link_serialise() {
    // (0,0)->(0,3) and (0,1)->(0,2) share the link (0,1)->(0,2) and nothing else.
    let n = 4096;
    let long = copies("d1", &[((0, 0), (0, 3))], n).simulated_seconds;
    let short = copies("d1", &[((0, 1), (0, 2))], n).simulated_seconds;
    let both = copies("d1", &[((0, 0), (0, 3)), ((0, 1), (0, 2))], n).simulated_seconds;
    let t = Target::preset("d1").unwrap();
    let serial = (n * 4) as f64 / (t.link_bytes_per_cycle * t.clock_hz);
    assert!(both > long.max(short), "{both} vs {long} {short}");
    // The second waits for the first's serialisation.
    assert!(
        (both - (serial + short)).abs() < 1e-12,
        "{both} {serial} {short}"
    );

    // Disjoint routes (different rows) do not interfere.
    let apart = copies("d1", &[((0, 0), (0, 3)), ((1, 1), (1, 2))], n).simulated_seconds;
    assert_eq!(apart, long.max(short));
    // Opposite directions use different links.
    let opposite = copies("d1", &[((0, 0), (0, 3)), ((0, 2), (0, 1))], n).simulated_seconds;
    assert_eq!(opposite, long.max(short));
}

#[test]
fn a_transfer_ready_early_uses_a_link_before_a_later_reservation() {
    // (0,0)->(0,1), then its data on (0,1)->(0,3): that second copy waits for the first, so
    // the links (0,1)->(0,2)->(0,3) and (0,3)'s port are reserved from then on. A copy
    // (0,2)->(0,3) later in program order but ready at once runs before it, in the gap, and
    // the Program takes no longer than the chain alone.
    let n = 4096;
    let chain = |with_third: bool| {
        let mut b = Builder::new("d1");
        let x = b.buf((0, 0), &[n]);
        let y = b.buf((0, 1), &[n]);
        let z = b.buf((0, 3), &[n]);
        copy(&mut b, x, y, n);
        copy(&mut b, y, z, n);
        if with_third {
            let u = b.buf((0, 2), &[n]);
            let v = b.buf((0, 3), &[n]);
            copy(&mut b, u, v, n);
        }
        SimMesh::timing_only().time(&b.p).unwrap().simulated_seconds
    };
    assert_eq!(chain(true), chain(false));
}

#[test]
fn a_core_receives_one_transfer_at_a_time() {
    // Four neighbours send to (5,5): the ejection port serialises them.
    let n = 1024;
    let one = copies("d1", &[((5, 4), (5, 5))], n).simulated_seconds;
    let four = copies(
        "d1",
        &[
            ((5, 4), (5, 5)),
            ((5, 6), (5, 5)),
            ((4, 5), (5, 5)),
            ((6, 5), (5, 5)),
        ],
        n,
    );
    let t = Target::preset("d1").unwrap();
    let serial = (n * 4) as f64 / (t.link_bytes_per_cycle * t.clock_hz);
    assert!((four.simulated_seconds - (one + 3.0 * serial)).abs() < 1e-12);
    // The roofline sees the ejection bound: 4 transfers into one core.
    assert!((four.roofline.injection_s - 4.0 * serial).abs() < 1e-15);
    assert_eq!(four.roofline_bound.as_deref(), Some("injection"));
}

#[test]
fn chip_and_tile_edges_add_latency_and_share_bandwidth() {
    let n = 16;
    let within = copies("tray", &[((0, 0), (0, 19))], n).simulated_seconds;
    let chip = copies("tray", &[((0, 0), (0, 20))], n).simulated_seconds;
    // Tile boundary between chip columns 4 and 5 (site column 100).
    let tile_in = copies("tray", &[((0, 80), (0, 99))], n).simulated_seconds;
    let tile_out = copies("tray", &[((0, 80), (0, 100))], n).simulated_seconds;
    let t = Target::preset("tray").unwrap();
    let hop = t.hop_latency_cycles / t.clock_hz;
    assert!((chip - within - hop - t.chip_edge_latency_s).abs() < 1e-15);
    assert!(
        (tile_out - tile_in - hop - t.chip_edge_latency_s - t.tile_edge_latency_s).abs() < 1e-15
    );

    // With a D1 edge slower than the 18 row links that cross it, rows crossing the same
    // edge share its bandwidth: 18 transfers take 18 x bytes / edge bandwidth.
    let mut b = Builder::new("tile");
    b.p.target.chip_edge_bytes_per_s = 64.0e9; // half a link
    let n = 4096;
    for r in 0..18 {
        let x = b.buf((r, 18), &[n]);
        let y = b.buf((r, 21), &[n]);
        copy(&mut b, x, y, n);
    }
    let prof = SimMesh::timing_only().time(&b.p).unwrap();
    let edge_s = (n * 4) as f64 / 64.0e9;
    let latency = (t.injection_latency_cycles + 3.0 * t.hop_latency_cycles) / t.clock_hz
        + t.chip_edge_latency_s;
    assert!((prof.simulated_seconds - (18.0 * edge_s + latency)).abs() < 1e-12);
    assert_never_beats_roofline(&prof, "edge sharing");
}

#[test]
fn the_simulator_rejects_disabled_cores_and_sram_overflow() {
    let mut b = Builder::new("d1");
    b.buf((17, 16), &[4]);
    let m = SimMesh::timing_only().time(&b.p).unwrap_err().message;
    assert!(
        m.contains("(17,16)") && m.contains("disabled (harvested)"),
        "{m}"
    );

    let mut b = Builder::new("exapod");
    b.buf((49 * 18 + 4, 59 * 20 + 19), &[4]);
    let m = run(&b.p, &[]).unwrap_err().message;
    assert!(m.contains("(886,1199)") && m.contains("disabled"), "{m}");

    let mut b = Builder::new("d1:2x2");
    b.buf((1, 1), &[300, 1024]); // 1,228,800 B > 1,179,648 B usable
    let m = run(&b.p, &[]).unwrap_err().message;
    assert!(
        m.starts_with(
            "core (1,1) needs 1,228,800 B of SRAM at instruction 0 but has 1,179,648 B usable"
        ),
        "{m}"
    );
}

#[test]
fn an_exapod_program_costs_only_what_it_uses() {
    // Corner to corner of 900 x 1200 sites: 2,098 hops, 59 + 49 chip edges, 11 + 9 tile edges.
    let n = 256;
    let prof = copies("exapod", &[((0, 0), (899, 1199))], n);
    let t = Target::preset("exapod").unwrap();
    assert_eq!(prof.link_bytes.len(), 899 + 1199);
    let latency = (t.injection_latency_cycles + 2098.0 * t.hop_latency_cycles) / t.clock_hz
        + 108.0 * t.chip_edge_latency_s
        + 20.0 * t.tile_edge_latency_s;
    let serial = (n * 4) as f64 / (t.link_bytes_per_cycle * t.clock_hz);
    assert!((prof.simulated_seconds - serial - latency).abs() < 1e-12);
    assert_eq!(prof.roofline_bound.as_deref(), Some("latency"));
    assert!((prof.roofline.latency_s - latency).abs() < 1e-15);
}

#[test]
fn a_compute_bound_kernel_meets_its_roofline() {
    let mut b = Builder::new("core");
    let n = 64;
    let a = b.buf((0, 0), &[n, n]);
    let w = b.buf((0, 0), &[n, n]);
    let o = b.buf((0, 0), &[n, n]);
    let first = b.p.instrs.len();
    b.push(Instr::Kernel {
        op: KernelOp::MatMul { accumulate: false, epilogue: vec![] },
        inputs: vec![a, w],
        output: o,
    });
    b.p.label_since(first, "matmul");
    let prof = run(&b.p, &[]).unwrap().1;
    assert_eq!(prof.roofline_bound.as_deref(), Some("compute"));
    assert_eq!(prof.roofline_efficiency, Some(1.0));
    assert_eq!(prof.ops.len(), 1);
    let op = &prof.ops[0];
    assert_eq!(
        (op.name.as_str(), op.instructions, op.flops, op.cores),
        ("matmul", 1, 2 * 64 * 64 * 64, 1)
    );
    assert_eq!(op.roofline.binding, Some(Bound::Compute));
    assert_eq!(op.efficiency, Some(1.0));
    assert!(prof.chrome_trace_json().contains("\"op\":\"matmul\""));
}

#[test]
fn provenance_is_optional_and_checked() {
    let mut b = Builder::new("core");
    let x = b.buf((0, 0), &[4]);
    b.push(Instr::Fill { buf: x, value: 1.0 });
    // No provenance: no ops, and the JSON has no provenance fields.
    assert!(!b.p.to_json().contains("op_names"));
    assert!(run(&b.p, &[]).unwrap().1.ops.is_empty());
    b.p.label_since(1, "fill");
    assert_eq!(b.p.instr_op, vec![None, Some(0)]);
    assert_eq!((b.p.op_of(0), b.p.op_of(1)), (None, Some("fill")));
    let back = Program::from_json(&b.p.to_json()).unwrap();
    assert_eq!(back, b.p);
    b.p.instr_op[1] = Some(3);
    let m = b.p.validate().unwrap_err().message;
    assert!(m.contains("instruction 1 names op 3"), "{m}");
}

/// xorshift64*: deterministic test randomness without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// A target of 2 x 2 chips: its middle row and column are chip boundaries (not tile ones).
fn two_by_two_chips() -> Target {
    let mut t = Target::preset("tile").unwrap();
    t.name = "2x2 chips".into();
    t.chip_grid = (2, 2);
    let (rows, cols) = (t.rows(), t.cols());
    t.disabled.retain(|c| c.row < rows && c.col < cols);
    t
}

/// A random Program: buffers of one square shape on random enabled cores, random loads,
/// local and remote (sub-box) copies, kernels, fills and stores, grouped into random ops.
fn random_program(rng: &mut Rng, target: Target) -> (Program, Inputs) {
    let r = 1 + rng.below(24) as usize;
    let shape = vec![r, r];
    let mut b = Builder {
        p: Program::new(target),
    };
    let t = b.p.target.clone();
    let ncores = (1 + rng.below(8)).min(t.enabled_cores());
    let mut cores = Vec::new();
    while (cores.len() as u64) < ncores {
        let c = CoreId::new(
            rng.below(u64::from(t.rows())) as u32,
            rng.below(u64::from(t.cols())) as u32,
        );
        if t.is_enabled(&c) && !cores.contains(&c) {
            cores.push(c);
        }
    }
    // Three buffers per core.
    let mut bufs: Vec<(usize, BufId)> = Vec::new();
    for (k, c) in cores.iter().enumerate() {
        for _ in 0..3 {
            bufs.push((k, b.buf((c.row, c.col), &shape)));
        }
    }
    let input = b.input(&shape);
    let inputs = vec![(shape.clone(), data(r * r, rng.below(100) as usize))];
    let mut first = b.p.instrs.len();
    let steps = 5 + rng.below(40);
    for _ in 0..steps {
        let pick = |rng: &mut Rng| bufs[rng.below(bufs.len() as u64) as usize];
        match rng.below(6) {
            0 => {
                let (_, x) = pick(rng);
                b.push(Instr::Load {
                    input,
                    src: Region::full(&shape),
                    buf: x,
                    dst: Region::full(&shape),
                });
            }
            1 | 2 => {
                let ((_, x), (_, y)) = (pick(rng), pick(rng));
                let sizes = vec![
                    1 + rng.below(r as u64) as usize,
                    1 + rng.below(r as u64) as usize,
                ];
                let off = |rng: &mut Rng| -> Vec<usize> {
                    sizes
                        .iter()
                        .map(|&s| rng.below((r - s + 1) as u64) as usize)
                        .collect()
                };
                let (so, d_o) = (off(rng), off(rng));
                b.push(Instr::Copy {
                    src: x,
                    src_region: Region::new(so, sizes.clone()),
                    dst: y,
                    dst_region: Region::new(d_o, sizes),
                });
            }
            3 => {
                // A kernel on one core's three buffers.
                let k = rng.below(cores.len() as u64) as usize;
                let mine: Vec<BufId> = bufs
                    .iter()
                    .filter(|(c, _)| *c == k)
                    .map(|&(_, b)| b)
                    .collect();
                let op = match rng.below(4) {
                    // Half of the matmuls with an epilogue: a residual add of `a` (input 2),
                    // then a relu.
                    0 => KernelOp::MatMul {
                        accumulate: rng.below(2) == 0,
                        epilogue: if rng.below(2) == 0 {
                            vec![
                                FusedStep {
                                    f: FusedFn::Binary(BinaryOp::Add),
                                    args: vec![FusedArg::Input(0), FusedArg::Input(1)],
                                },
                                FusedStep { f: FusedFn::Unary(UnaryOp::Relu), args: vec![FusedArg::Step(0)] },
                            ]
                        } else {
                            vec![]
                        },
                    },
                    1 => KernelOp::Binary { op: BinaryOp::Add },
                    2 => KernelOp::Unary { op: UnaryOp::Exp },
                    _ => KernelOp::Scale { factor: 0.5 },
                };
                let inputs = if matches!(&op, KernelOp::MatMul { epilogue, .. } if !epilogue.is_empty()) {
                    vec![mine[0], mine[1], mine[0]]
                } else if matches!(op, KernelOp::MatMul { .. } | KernelOp::Binary { .. }) {
                    vec![mine[0], mine[1]]
                } else {
                    vec![mine[0]]
                };
                b.push(Instr::Kernel {
                    op,
                    inputs,
                    output: mine[2],
                });
            }
            4 => {
                let (_, x) = pick(rng);
                b.push(Instr::Fill {
                    buf: x,
                    value: 0.25,
                });
            }
            _ => {
                let (_, x) = pick(rng);
                b.store_full(x);
            }
        }
        if rng.below(3) == 0 {
            let name = format!("op{}", b.p.op_names.len());
            b.p.label_since(first, name);
            first = b.p.instrs.len();
        }
    }
    (b.p, inputs)
}

#[test]
fn simulated_time_never_beats_the_roofline_on_random_programs() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut targets: Vec<Target> = ["core", "d1:4x4", "d1", "tile", "tray"]
        .iter()
        .map(|m| Target::preset(m).unwrap())
        .collect();
    targets.push(two_by_two_chips());
    // Sensitivity settings: wide links and no fixed host cost (the host term can bind);
    // slow D1 edges (the bisection term binds, edges contend).
    let mut fast = Target::preset("d1:8x8").unwrap();
    fast.name = "d1:8x8 wide links".into();
    fast.link_bytes_per_cycle = 256.0;
    fast.host_latency_s = 0.0;
    targets.push(fast);
    let mut slow_edges = two_by_two_chips();
    slow_edges.name = "2x2 chips, slow edges".into();
    slow_edges.chip_edge_bytes_per_s = 1.0e9;
    targets.push(slow_edges);
    let mut bindings = std::collections::BTreeSet::new();
    for case in 0..300 {
        let target = targets[case % targets.len()].clone();
        let name = target.name.clone();
        let (p, inputs) = random_program(&mut rng, target);
        let what = format!("case {case} on {name}");
        let timed = SimMesh::timing_only()
            .time(&p)
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_never_beats_roofline(&timed, &what);
        for op in &timed.ops {
            if let Some(b) = op.roofline.binding {
                bindings.insert(b);
            }
        }
        if let Some(b) = timed.roofline.binding {
            bindings.insert(b);
        }
        // The timing-only run gives the functional run's Profile.
        if case % 5 == 0 {
            let (outs, full) = run(&p, &inputs).unwrap();
            assert_eq!(full, timed, "{what}");
            // The functional pass runs independent instructions in parallel: the values do
            // not depend on the thread count.
            let pool = |n| rayon::ThreadPoolBuilder::new().num_threads(n).build().unwrap();
            for threads in [1, 3] {
                let (again, _) = pool(threads).install(|| run(&p, &inputs)).unwrap();
                for (a, b) in outs.iter().zip(&again) {
                    assert_eq!(bits(&a.data), bits(&b.data), "{what}: {threads} thread(s)");
                }
            }
            let (touts, _) = SimMesh::timing_only()
                .execute(&p, &[(inputs[0].0.as_slice(), &[][..])])
                .unwrap();
            assert_eq!(touts.len(), outs.len());
            assert!(touts.iter().all(|t| t.data.is_empty()));
        }
    }
    // The random Programs exercise every term of the roofline.
    assert_eq!(bindings.len(), 6, "{bindings:?}");
}

#[test]
fn bisection_counts_bytes_crossing_the_middle() {
    // d1 is 18 x 20: the middle column boundary is between columns 9 and 10.
    let n = 1024;
    let t = Target::preset("d1").unwrap();
    let link = t.link_bytes_per_cycle * t.clock_hz;
    let prof = copies(
        "d1",
        &[((0, 9), (0, 10)), ((3, 0), (3, 19)), ((4, 12), (4, 2))],
        n,
    );
    let east = 2.0 * (n * 4) as f64 / (18.0 * link);
    assert!(
        (prof.roofline.bisection_s - east).abs() < 1e-18,
        "{:?}",
        prof.roofline
    );
    // On 2 x 2 chips the middle is a D1 edge: 2 chip edges at 2 TB/s < 36 links.
    let mut b = Builder {
        p: Program::new(two_by_two_chips()),
    };
    let x = b.buf((0, 19), &[n]);
    let y = b.buf((0, 20), &[n]);
    copy(&mut b, x, y, n);
    let prof = SimMesh::timing_only().time(&b.p).unwrap();
    let want = (n * 4) as f64 / (36.0 * link).min(2.0 * b.p.target.chip_edge_bytes_per_s);
    assert!((prof.roofline.bisection_s - want).abs() < 1e-18);
}
