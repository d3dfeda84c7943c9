//! The naive baseline plan (`lower-to-d1{plan=naive}`, compile option `plan`): every op's result
//! row-split over all cores. It must compute what the default plan computes (and the reference
//! interpreter), run on the simulator, and be slower: it is the baseline the default plan's
//! speedup is measured against (issue 5).

use dojo_compiler::{parse_module, ElemType, Module, Type};
use dojo_passes::driver::{compile_graph, DojoError};
use dojo_passes::emit::emit_program;
use dojo_passes::interp::{self, Array};
use dojo_passes::registry::build_pipeline;
use dojo_runtime::{Device, Profile, SimMesh};
use std::path::Path;

/// A linear layer and a row softmax, a transposed second matmul and a regrouping reshape: a
/// matmul, a broadcast add, a transpose, reductions over the row split and across it, a local
/// and a regrouping reshape.
const GRAPH: &str = r#""builtin.module"() ({
  "func.func"() <{function_type = (tensor<256x128xf32>, tensor<128x96xf32>, tensor<96xf32>, tensor<256x64xf32>) -> (tensor<96x64xf32>, tensor<256x96xf32>, tensor<96xf32>, tensor<16x16x96xf32>), sym_name = "f"}> ({
  ^bb0(%x: tensor<256x128xf32>, %w: tensor<128x96xf32>, %bias: tensor<96xf32>, %y: tensor<256x64xf32>):
    %0 = "dojo.matmul"(%x, %w) : (tensor<256x128xf32>, tensor<128x96xf32>) -> tensor<256x96xf32>
    %1 = "dojo.add"(%0, %bias) : (tensor<256x96xf32>, tensor<96xf32>) -> tensor<256x96xf32>
    %2 = "dojo.reduce_max"(%1) {dims = array<i64: 1>, keepdim = true} : (tensor<256x96xf32>) -> tensor<256x1xf32>
    %3 = "dojo.sub"(%1, %2) : (tensor<256x96xf32>, tensor<256x1xf32>) -> tensor<256x96xf32>
    %4 = "dojo.exp"(%3) : (tensor<256x96xf32>) -> tensor<256x96xf32>
    %5 = "dojo.reduce_sum"(%4) {dims = array<i64: 1>, keepdim = true} : (tensor<256x96xf32>) -> tensor<256x1xf32>
    %6 = "dojo.div"(%4, %5) : (tensor<256x96xf32>, tensor<256x1xf32>) -> tensor<256x96xf32>
    %7 = "dojo.transpose"(%6) {perm = array<i64: 1, 0>} : (tensor<256x96xf32>) -> tensor<96x256xf32>
    %8 = "dojo.matmul"(%7, %y) : (tensor<96x256xf32>, tensor<256x64xf32>) -> tensor<96x64xf32>
    %9 = "dojo.reduce_sum"(%1) {dims = array<i64: 0>, keepdim = false} : (tensor<256x96xf32>) -> tensor<96xf32>
    %10 = "dojo.reshape"(%6) : (tensor<256x96xf32>) -> tensor<16x16x96xf32>
    "func.return"(%8, %6, %9, %10) : (tensor<96x64xf32>, tensor<256x96xf32>, tensor<96xf32>, tensor<16x16x96xf32>) -> ()
  }) : () -> ()
}) : () -> ()
"#;

fn inputs(module: &Module) -> Vec<Array> {
    let func = &module.funcs[0];
    func.arg_types()
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let Type::Tensor(t) = t else { panic!("non-tensor argument") };
            let mut data = interp::random_data(t.numel(), i as u64 + 1);
            if t.elem == ElemType::I1 {
                data.iter_mut().for_each(|x| *x = if *x > 0.0 { 1.0 } else { 0.0 });
            }
            Array { shape: t.shape.clone(), data }
        })
        .collect()
}

/// Lower `module` with `pipeline`, run it on the simulator: outputs and Profile.
fn simulate(module: &Module, pipeline: &str, inputs: &[Array]) -> Result<(Vec<Array>, Profile), String> {
    let mut m = module.clone();
    let (_, r) = build_pipeline(pipeline)?.run(&mut m);
    r.map_err(|e| e.to_string())?;
    let program = emit_program(&m, None).map_err(|e| e.to_string())?;
    let refs: Vec<(&[usize], &[f32])> = inputs.iter().map(|a| (a.shape.as_slice(), a.data.as_slice())).collect();
    let (outs, profile) = SimMesh::new().execute(&program, &refs).map_err(|e| e.to_string())?;
    Ok((outs.into_iter().map(|t| Array { shape: t.shape, data: t.data }).collect(), profile))
}

fn assert_close(what: &str, got: &[Array], want: &[Array]) {
    assert_eq!(got.len(), want.len(), "{what}: output count");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(g.shape, w.shape, "{what}: output {i} shape");
        let scale = w.data.iter().fold(1e-6f32, |m, x| m.max(x.abs()));
        for (k, (a, b)) in g.data.iter().zip(&w.data).enumerate() {
            assert!((a - b).abs() <= 1e-4 * scale || (a.is_nan() && b.is_nan()), "{what}: output {i}[{k}]: {a} vs {b}");
        }
    }
}

#[test]
fn naive_plan_computes_the_default_values_and_is_slower() {
    let module = parse_module(GRAPH).expect("parses");
    let xs = inputs(&module);
    let want = interp::run(&module.funcs[0], &xs).expect("interpreter");
    for mesh in ["d1:4x4", "d1"] {
        let (ours, fast) = simulate(&module, &format!("lower-to-d1{{mesh={mesh}}},dce"), &xs).expect("default plan");
        let (naive, slow) = simulate(&module, &format!("lower-to-d1{{mesh={mesh} plan=naive}},dce"), &xs).expect("naive plan");
        assert_close(&format!("default on {mesh}"), &ours, &want);
        assert_close(&format!("naive on {mesh}"), &naive, &ours);
        assert!(
            slow.simulated_seconds > fast.simulated_seconds,
            "{mesh}: the naive plan takes {:.3e} s, the default {:.3e} s",
            slow.simulated_seconds,
            fast.simulated_seconds
        );
    }
}

/// A weight gradient's slabs under the naive plan (what resnet50's training backward needs):
/// a batched matmul with more batches (128) than rows (8) is split by batch, `b` with it
/// (split by rows, each core would need `b`'s 128 batches' panels and accumulators: more
/// than fits even one column at a time), and the sum over the batch reduce-scatters its 64
/// partials over all cores (1.2 MB gathered on one core would not fit).
#[test]
fn naive_plan_splits_a_many_batch_matmul_by_batch_and_reduce_scatters_its_sum() {
    const SLABS: &str = r#""builtin.module"() ({
  "func.func"() <{function_type = (tensor<128x8x64xf32>, tensor<128x64x576xf32>) -> (tensor<8x576xf32>), sym_name = "f"}> ({
  ^bb0(%a: tensor<128x8x64xf32>, %b: tensor<128x64x576xf32>):
    %0 = "dojo.matmul"(%a, %b) : (tensor<128x8x64xf32>, tensor<128x64x576xf32>) -> tensor<128x8x576xf32>
    %1 = "dojo.reduce_sum"(%0) {dims = array<i64: 0>, keepdim = false} : (tensor<128x8x576xf32>) -> tensor<8x576xf32>
    "func.return"(%1) : (tensor<8x576xf32>) -> ()
  }) : () -> ()
}) : () -> ()
"#;
    let module = parse_module(SLABS).expect("parses");
    let xs = inputs(&module);
    let want = interp::run(&module.funcs[0], &xs).expect("interpreter");
    // (The simulator rejects a Program that overflows a core's SRAM.)
    let (got, profile) = simulate(&module, "lower-to-d1{mesh=d1:8x8 plan=naive},dce", &xs).expect("the naive plan fits");
    assert_close("naive slabs", &got, &want);
    assert!(profile.simulated_seconds > 0.0);
}

/// Every lowering file test's input also lowers with the naive plan, and the simulator
/// computes what the reference interpreter does; except a case whose `///` text says it
/// does not fit under the naive plan.
#[test]
fn naive_plan_lowers_every_lowering_file_test() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/filetests/lower");
    let mut cases: Vec<_> = std::fs::read_dir(&dir).expect("dir").map(|e| e.expect("entry").path()).collect();
    cases.sort();
    let mut ran = 0;
    for path in cases.iter().filter(|p| p.extension().is_some_and(|e| e == "mlir")) {
        let text = std::fs::read_to_string(path).expect("read");
        if text.lines().any(|l| l.starts_with("///") && l.contains("does not fit under the naive plan")) {
            continue;
        }
        let run = text.lines().next().and_then(|l| l.split("--pass-pipeline='").nth(1)).and_then(|p| p.split('\'').next()).expect("RUN line");
        let mesh = run.split("mesh=").nth(1).and_then(|m| m.split(['}', ' ']).next()).expect("a mesh");
        let mut module = parse_module(&text).expect("parses");
        if run.contains("legalize-aten") {
            let (_, r) = build_pipeline("legalize-aten,dce").expect("pipeline").run(&mut module);
            r.expect("legalizes");
        }
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("?");
        let xs = inputs(&module);
        let want = interp::run(&module.funcs[0], &xs).unwrap_or_else(|e| panic!("{name}: interpreter: {e}"));
        let (got, _) = simulate(&module, &format!("lower-to-d1{{mesh={mesh} plan=naive}},dce"), &xs).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_close(name, &got, &want);
        ran += 1;
    }
    assert!(ran >= 8, "only {ran} lowering file tests found");
}

/// The compile option reaches the pass: the naive plan's Program differs, and it is the same
/// bytes on every compile; a bad plan is a clear error.
#[test]
fn compile_option_plan() {
    const MM: &str = r#"{"name": "g", "inputs": [{"name": "a", "shape": [64, 32], "dtype": "f32"}, {"name": "b", "shape": [32, 48], "dtype": "f32"}],
        "nodes": [{"name": "c", "target": "aten.mm.default", "operands": ["a", "b"], "outputs": [{"shape": [64, 48], "dtype": "f32"}]}],
        "outputs": ["c"]}"#;
    let default = compile_graph(MM, r#"{"mesh": "d1:4x4"}"#).expect("compiles");
    let naive = compile_graph(MM, r#"{"mesh": "d1:4x4", "plan": "naive"}"#).expect("compiles");
    let again = compile_graph(MM, r#"{"mesh": "d1:4x4", "plan": "naive"}"#).expect("compiles");
    assert_ne!(default.program_json(), naive.program_json());
    assert_eq!(naive.program_json(), again.program_json());
    let lowered = &naive.stages.iter().find(|(s, _)| s == "lower-to-d1").expect("stage").1;
    assert!(lowered.contains("split = array<i64: 2, -1>"), "{lowered}");
    match compile_graph(MM, r#"{"plan": "fast"}"#) {
        Err(DojoError::Invalid(m)) => assert!(m.contains("option 'plan': unknown plan 'fast'; plans: default, naive"), "{m}"),
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("a bad plan compiled"),
    }
}
