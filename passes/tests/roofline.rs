//! Simulated time never beats the roofline: many random matmul / elementwise / reduction
//! graphs, compiled through the real pipeline (`lower-to-d1`, `dce`, emit) on several
//! presets, timed on the simulator; every op of the emitted Program (its provenance) and the
//! Program as a whole must take at least its roofline bound.

use dojo_compiler::parse_module;
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
