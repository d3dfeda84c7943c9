//! The MLIR bridge: `emit_mlir` (graph-level IR to func/linalg/tensor/arith/math, verified by
//! MLIR) and `parse_with_mlir` (our dumps read by a real MLIR context).
//!
//! Run with `cargo test -p dojo-passes --features mlir --test mlir` (needs LLVM/MLIR 22; see
//! the build notes). Checks that need the `mlir-opt`/`mlir-runner` binaries print a note and
//! skip that part when the binaries are missing.
#![cfg(feature = "mlir")]

use dojo_compiler::parse_module;
use dojo_passes::interp::{self, Array};
use dojo_passes::mlir::{emit_mlir, parse_with_mlir};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// An MLP forward over every kind of graph op: transposed weights, matmul, bias broadcast
/// ([128] over [32, 128]), relu, compare with a scalar constant, select, keepdim reduction,
/// reshape.
const MLP: &str = r#""builtin.module"() ({
  "func.func"() <{function_type = (tensor<32x64xf32>, tensor<128x64xf32>, tensor<128xf32>) -> (tensor<8x16xf32>, tensor<32x128xf32>), sym_name = "mlp"}> ({
  ^bb0(%x: tensor<32x64xf32>, %w: tensor<128x64xf32>, %b: tensor<128xf32>):
    %0 = "dojo.transpose"(%w) {perm = array<i64: 1, 0>} : (tensor<128x64xf32>) -> tensor<64x128xf32>
    %1 = "dojo.matmul"(%x, %0) : (tensor<32x64xf32>, tensor<64x128xf32>) -> tensor<32x128xf32>
    %2 = "dojo.add"(%1, %b) : (tensor<32x128xf32>, tensor<128xf32>) -> tensor<32x128xf32>
    %3 = "dojo.relu"(%2) : (tensor<32x128xf32>) -> tensor<32x128xf32>
    %c = "dojo.constant"() {value = 0.5 : f64} : () -> tensor<f32>
    %4 = "dojo.cmp"(%3, %c) {predicate = "le"} : (tensor<32x128xf32>, tensor<f32>) -> tensor<32x128xi1>
    %5 = "dojo.select"(%4, %c, %3) : (tensor<32x128xi1>, tensor<f32>, tensor<32x128xf32>) -> tensor<32x128xf32>
    %6 = "dojo.reduce_sum"(%5) {dims = array<i64: 0>, keepdim = true} : (tensor<32x128xf32>) -> tensor<1x128xf32>
    %7 = "dojo.reshape"(%6) : (tensor<1x128xf32>) -> tensor<8x16xf32>
    "func.return"(%7, %5) : (tensor<8x16xf32>, tensor<32x128xf32>) -> ()
  }) : () -> ()
}) : () -> ()
"#;

/// Every elementwise function, every predicate, size-1 stretching, rank-3 (batched) matmul,
/// a `[d..., k] @ [k, n]` matmul with an epilogue, full and partial reductions, 3-d
/// transpose, broadcast and conversions both ways.
const ALL_OPS: &str = r#""builtin.module"() ({
  "func.func"() <{function_type = (tensor<4x8xf32>, tensor<4x1xf32>, tensor<1x8xf32>, tensor<2x4x3xf32>, tensor<2x3x5xf32>) -> (tensor<4x8xf32>, tensor<4x8xf32>, tensor<4x8xf32>, tensor<2x4x5xf32>, tensor<1x1xf32>, tensor<f32>, tensor<5x2x4xf32>, tensor<3x4x8xf32>, tensor<4x8xf32>, tensor<2x24xf32>, tensor<1x2x4x5xf32>), sym_name = "all"}> ({
  ^bb0(%a: tensor<4x8xf32>, %col: tensor<4x1xf32>, %row: tensor<1x8xf32>, %p: tensor<2x4x3xf32>, %q: tensor<2x3x5xf32>):
    %e0 = "dojo.neg"(%a) : (tensor<4x8xf32>) -> tensor<4x8xf32>
    %e1 = "dojo.exp"(%e0) : (tensor<4x8xf32>) -> tensor<4x8xf32>
    %e2 = "dojo.abs"(%a) : (tensor<4x8xf32>) -> tensor<4x8xf32>
    %e3 = "dojo.log"(%e1) : (tensor<4x8xf32>) -> tensor<4x8xf32>
    %e4 = "dojo.sqrt"(%e1) : (tensor<4x8xf32>) -> tensor<4x8xf32>
    %e5 = "dojo.rsqrt"(%e1) : (tensor<4x8xf32>) -> tensor<4x8xf32>
    %e6 = "dojo.tanh"(%a) : (tensor<4x8xf32>) -> tensor<4x8xf32>
    %e7 = "dojo.sigmoid"(%a) : (tensor<4x8xf32>) -> tensor<4x8xf32>
    %e8 = "dojo.reciprocal"(%e1) : (tensor<4x8xf32>) -> tensor<4x8xf32>
    %e9 = "dojo.relu"(%a) : (tensor<4x8xf32>) -> tensor<4x8xf32>
    %b0 = "dojo.add"(%col, %row) : (tensor<4x1xf32>, tensor<1x8xf32>) -> tensor<4x8xf32>
    %b1 = "dojo.sub"(%b0, %e3) : (tensor<4x8xf32>, tensor<4x8xf32>) -> tensor<4x8xf32>
    %b2 = "dojo.mul"(%b1, %e4) : (tensor<4x8xf32>, tensor<4x8xf32>) -> tensor<4x8xf32>
    %b3 = "dojo.div"(%b2, %e2) : (tensor<4x8xf32>, tensor<4x8xf32>) -> tensor<4x8xf32>
    %b4 = "dojo.maximum"(%b3, %e5) : (tensor<4x8xf32>, tensor<4x8xf32>) -> tensor<4x8xf32>
    %b5 = "dojo.minimum"(%b4, %e6) : (tensor<4x8xf32>, tensor<4x8xf32>) -> tensor<4x8xf32>
    %b6 = "dojo.pow"(%e1, %row) : (tensor<4x8xf32>, tensor<1x8xf32>) -> tensor<4x8xf32>
    %s0 = "dojo.add"(%b5, %b6) : (tensor<4x8xf32>, tensor<4x8xf32>) -> tensor<4x8xf32>
    %s1 = "dojo.add"(%s0, %e7) : (tensor<4x8xf32>, tensor<4x8xf32>) -> tensor<4x8xf32>
    %s2 = "dojo.add"(%s1, %e8) : (tensor<4x8xf32>, tensor<4x8xf32>) -> tensor<4x8xf32>
    %s3 = "dojo.add"(%s2, %e9) : (tensor<4x8xf32>, tensor<4x8xf32>) -> tensor<4x8xf32>
    %c0 = "dojo.cmp"(%a, %col) {predicate = "eq"} : (tensor<4x8xf32>, tensor<4x1xf32>) -> tensor<4x8xi1>
    %c1 = "dojo.cmp"(%a, %col) {predicate = "ne"} : (tensor<4x8xf32>, tensor<4x1xf32>) -> tensor<4x8xi1>
    %c2 = "dojo.cmp"(%a, %row) {predicate = "lt"} : (tensor<4x8xf32>, tensor<1x8xf32>) -> tensor<4x8xi1>
    %c3 = "dojo.cmp"(%a, %row) {predicate = "gt"} : (tensor<4x8xf32>, tensor<1x8xf32>) -> tensor<4x8xi1>
    %c4 = "dojo.cmp"(%a, %b0) {predicate = "ge"} : (tensor<4x8xf32>, tensor<4x8xf32>) -> tensor<4x8xi1>
    %f0 = "dojo.convert"(%c0) : (tensor<4x8xi1>) -> tensor<4x8xf32>
    %f1 = "dojo.convert"(%c1) : (tensor<4x8xi1>) -> tensor<4x8xf32>
    %f2 = "dojo.convert"(%c2) : (tensor<4x8xi1>) -> tensor<4x8xf32>
    %f3 = "dojo.convert"(%c3) : (tensor<4x8xi1>) -> tensor<4x8xf32>
    %t0 = "dojo.add"(%f0, %f1) : (tensor<4x8xf32>, tensor<4x8xf32>) -> tensor<4x8xf32>
    %t1 = "dojo.add"(%f2, %f3) : (tensor<4x8xf32>, tensor<4x8xf32>) -> tensor<4x8xf32>
    %t2 = "dojo.add"(%t0, %t1) : (tensor<4x8xf32>, tensor<4x8xf32>) -> tensor<4x8xf32>
    %k = "dojo.constant"() {value = -1.25 : f64} : () -> tensor<4x1xf32>
    %sel = "dojo.select"(%c4, %k, %a) : (tensor<4x8xi1>, tensor<4x1xf32>, tensor<4x8xf32>) -> tensor<4x8xf32>
    %bk = "dojo.convert"(%sel) : (tensor<4x8xf32>) -> tensor<4x8xi1>
    %sel2 = "dojo.select"(%bk, %sel, %t2) : (tensor<4x8xi1>, tensor<4x8xf32>, tensor<4x8xf32>) -> tensor<4x8xf32>
    %mm = "dojo.matmul"(%p, %q) : (tensor<2x4x3xf32>, tensor<2x3x5xf32>) -> tensor<2x4x5xf32>
    %r0 = "dojo.reduce_sum"(%a) {dims = array<i64: 0, 1>, keepdim = true} : (tensor<4x8xf32>) -> tensor<1x1xf32>
    %r1 = "dojo.reduce_sum"(%mm) {dims = array<i64: 2, 0, 1>, keepdim = false} : (tensor<2x4x5xf32>) -> tensor<f32>
    %tr = "dojo.transpose"(%mm) {perm = array<i64: 2, 0, 1>} : (tensor<2x4x5xf32>) -> tensor<5x2x4xf32>
    %bc = "dojo.broadcast"(%col) : (tensor<4x1xf32>) -> tensor<3x4x8xf32>
    %bc2 = "dojo.broadcast"(%row) : (tensor<1x8xf32>) -> tensor<4x8xf32>
    %rs = "dojo.reshape"(%p) : (tensor<2x4x3xf32>) -> tensor<24xf32>
    %bc3 = "dojo.broadcast"(%rs) : (tensor<24xf32>) -> tensor<2x24xf32>
    %p4 = "dojo.reshape"(%p) : (tensor<2x4x3xf32>) -> tensor<1x2x4x3xf32>
    %q2 = "dojo.reduce_sum"(%q) {dims = array<i64: 0>, keepdim = false} : (tensor<2x3x5xf32>) -> tensor<3x5xf32>
    %fm = "dojo.matmul"(%p4, %q2) {epilogue = "relu(x0)"} : (tensor<1x2x4x3xf32>, tensor<3x5xf32>) -> tensor<1x2x4x5xf32>
    "func.return"(%s3, %t2, %sel2, %mm, %r0, %r1, %tr, %bc, %bc2, %bc3, %fm) : (tensor<4x8xf32>, tensor<4x8xf32>, tensor<4x8xf32>, tensor<2x4x5xf32>, tensor<1x1xf32>, tensor<f32>, tensor<5x2x4xf32>, tensor<3x4x8xf32>, tensor<4x8xf32>, tensor<2x24xf32>, tensor<1x2x4x5xf32>) -> ()
  }) : () -> ()
}) : () -> ()
"#;

fn emit(text: &str) -> String {
    let m = parse_module(text).unwrap_or_else(|e| panic!("test IR does not parse: {e}"));
    emit_mlir(&m).unwrap_or_else(|e| panic!("emit_mlir failed: {e}"))
}

/// An MLIR tool: `/usr/lib/llvm-22/bin/<name>`, else `<name>-22` or `<name>` on PATH.
fn tool(name: &str) -> Option<PathBuf> {
    let fixed = Path::new("/usr/lib/llvm-22/bin").join(name);
    if fixed.is_file() {
        return Some(fixed);
    }
    let path = std::env::var_os("PATH")?;
    for dir in std::env::split_paths(&path) {
        for n in [format!("{name}-22"), name.to_string()] {
            let p = dir.join(&n);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

/// Run a tool with `input` on stdin; returns (success, stdout, stderr).
fn run_tool(tool: &Path, args: &[&str], input: &str) -> (bool, String, String) {
    let mut child = Command::new(tool)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", tool.display()));
    child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("write to tool");
    let out = child.wait_with_output().expect("wait for tool");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// mlir-opt must accept the emitted text as is, and bufferize and lower it to loops.
fn check_with_mlir_opt(mlir: &str) {
    let Some(opt) = tool("mlir-opt") else {
        println!("note: mlir-opt (LLVM 22) not found; skipping the mlir-opt check");
        return;
    };
    let (ok, _, err) = run_tool(&opt, &[], mlir);
    assert!(ok, "mlir-opt rejected the emitted MLIR:\n{err}\n--- input ---\n{mlir}");
    let (ok, out, err) =
        run_tool(&opt, &["--one-shot-bufferize=bufferize-function-boundaries", "--convert-linalg-to-loops"], mlir);
    assert!(ok, "mlir-opt could not bufferize and lower the emitted MLIR:\n{err}\n--- input ---\n{mlir}");
    if mlir.contains("linalg.") {
        assert!(out.contains("scf.for"), "lowering to loops produced no loops:\n{out}");
    }
}

#[test]
fn mlp_forward_emits_verified_linalg() {
    let mlir = emit(MLP);
    for want in [
        "func.func @mlp(%arg0: tensor<32x64xf32>, %arg1: tensor<128x64xf32>, %arg2: tensor<128xf32>) -> (tensor<8x16xf32>, tensor<32x128xf32>)",
        "linalg.transpose",
        "linalg.fill",
        "linalg.matmul",
        "linalg.generic",
        "arith.maximumf",
        "arith.cmpf ole",
        "arith.select",
        "linalg.reduce",
        "tensor.expand_shape",
        "tensor.reshape",
        // The bias [128] broadcast over [32, 128]: its map drops the leading dim.
        "affine_map<(d0, d1) -> (d1)>",
        // The rank-0 constant is read with an empty map.
        "affine_map<(d0, d1) -> ()>",
    ] {
        assert!(mlir.contains(want), "emitted MLIR lacks '{want}':\n{mlir}");
    }
    assert!(!mlir.contains("dojo."), "dojo ops left in the output:\n{mlir}");
    // The output is verified MLIR: it reads back into a strict context too.
    parse_with_mlir(&mlir).expect("emitted MLIR parses back");
    check_with_mlir_opt(&mlir);
}

#[test]
fn every_graph_op_emits_verified_mlir() {
    let mlir = emit(ALL_OPS);
    for want in [
        "arith.negf",
        "math.exp",
        "math.absf",
        "math.log",
        "math.sqrt",
        "math.rsqrt",
        "math.tanh",
        "arith.divf",
        "arith.subf",
        "arith.mulf",
        "arith.minimumf",
        "math.powf",
        "arith.cmpf oeq",
        "arith.cmpf une",
        "arith.cmpf olt",
        "arith.cmpf ogt",
        "arith.cmpf oge",
        "arith.uitofp",
        "linalg.batch_matmul",
        "linalg.matmul",
        "tensor.reshape",
        "linalg.broadcast",
        // Size-1 dims that stretch read index 0.
        "affine_map<(d0, d1) -> (d0, 0)>",
        "affine_map<(d0, d1) -> (0, d1)>",
        "affine_map<(d0, d1, d2) -> (d1, 0)>",
    ] {
        assert!(mlir.contains(want), "emitted MLIR lacks '{want}':\n{mlir}");
    }
    check_with_mlir_opt(&mlir);
}

#[test]
fn aten_and_d1_modules_are_refused_with_a_clear_error() {
    let aten = r#""builtin.module"() ({
  "func.func"() <{function_type = (tensor<2x3xf32>) -> tensor<2x3xf32>, sym_name = "f"}> ({
  ^bb0(%x: tensor<2x3xf32>):
    %0 = "aten.relu.default"(%x) : (tensor<2x3xf32>) -> tensor<2x3xf32>
    "func.return"(%0) : (tensor<2x3xf32>) -> ()
  }) : () -> ()
}) : () -> ()
"#;
    let err = emit_mlir(&parse_module(aten).unwrap()).unwrap_err();
    assert!(
        err.starts_with("--emit=mlir takes graph-level IR: run legalize-aten first; found 'aten.relu.default'"),
        "unexpected error: {err}"
    );
    assert!(err.contains("@f"), "the error names the function: {err}");

    let d1 = r#""builtin.module"() ({
  "func.func"() <{function_type = (tensor<4x4xf32>) -> tensor<4x4xf32>, sym_name = "g"}> ({
  ^bb0(%x: tensor<4x4xf32>):
    %0 = "d1.load"(%x) {layout = {block = array<i64: 0, 0, 2, 2>, split = array<i64: 0, 1>}} : (tensor<4x4xf32>) -> tensor<4x4xf32>
    %1 = "d1.store"(%0) : (tensor<4x4xf32>) -> tensor<4x4xf32>
    "func.return"(%1) : (tensor<4x4xf32>) -> ()
  }) : () -> ()
}) : () -> ()
"#;
    let err = emit_mlir(&parse_module(d1).unwrap()).unwrap_err();
    assert!(err.contains("graph-level IR") && err.contains("'d1.load'"), "unexpected error: {err}");
}

#[test]
fn unsupported_element_types_are_refused_naming_the_op() {
    let bf16 = r#""builtin.module"() ({
  "func.func"() <{function_type = (tensor<2x3xf32>) -> tensor<2x3xbf16>, sym_name = "f"}> ({
  ^bb0(%x: tensor<2x3xf32>):
    %0 = "dojo.convert"(%x) : (tensor<2x3xf32>) -> tensor<2x3xbf16>
    "func.return"(%0) : (tensor<2x3xbf16>) -> ()
  }) : () -> ()
}) : () -> ()
"#;
    let err = emit_mlir(&parse_module(bf16).unwrap()).unwrap_err();
    assert!(err.contains("bf16") && err.contains("f32, i1 and i64"), "unexpected error: {err}");

    let cf8 = r#""builtin.module"() ({
  "func.func"() <{function_type = (tensor<2x3xf32>) -> tensor<2x3xf32>, sym_name = "f"}> ({
  ^bb0(%x: tensor<2x3xf32>):
    %0 = "dojo.convert"(%x) : (tensor<2x3xf32>) -> tensor<2x3x!dojo.cf8_143<7>>
    %1 = "dojo.convert"(%0) : (tensor<2x3x!dojo.cf8_143<7>>) -> tensor<2x3xf32>
    "func.return"(%1) : (tensor<2x3xf32>) -> ()
  }) : () -> ()
}) : () -> ()
"#;
    let err = emit_mlir(&parse_module(cf8).unwrap()).unwrap_err();
    assert!(err.contains("'dojo.convert' (op #0 of @f)") && err.contains("cf8_143"), "unexpected error: {err}");

    // Integer arithmetic without an exact integer meaning is refused, naming the op.
    let idiv = r#""builtin.module"() ({
  "func.func"() <{function_type = (tensor<3xi64>, tensor<3xi64>) -> tensor<3xi64>, sym_name = "f"}> ({
  ^bb0(%x: tensor<3xi64>, %y: tensor<3xi64>):
    %0 = "dojo.add"(%x, %y) : (tensor<3xi64>, tensor<3xi64>) -> tensor<3xi64>
    %1 = "dojo.div"(%0, %y) : (tensor<3xi64>, tensor<3xi64>) -> tensor<3xi64>
    "func.return"(%1) : (tensor<3xi64>) -> ()
  }) : () -> ()
}) : () -> ()
"#;
    let err = emit_mlir(&parse_module(idiv).unwrap()).unwrap_err();
    assert!(err.contains("'dojo.div' (op #1 of @f)") && err.contains("i64"), "unexpected error: {err}");
}

#[test]
fn integer_and_bool_graphs_emit() {
    let text = r#""builtin.module"() ({
  "func.func"() <{function_type = (tensor<3xi64>, tensor<2x3xi64>, tensor<2x3xi1>) -> (tensor<2x3xi64>, tensor<2x3xf32>, tensor<2x3xi1>), sym_name = "ints"}> ({
  ^bb0(%x: tensor<3xi64>, %y: tensor<2x3xi64>, %m: tensor<2x3xi1>):
    %k = "dojo.constant"() {value = 7 : i64} : () -> tensor<i64>
    %0 = "dojo.add"(%x, %y) : (tensor<3xi64>, tensor<2x3xi64>) -> tensor<2x3xi64>
    %1 = "dojo.maximum"(%0, %k) : (tensor<2x3xi64>, tensor<i64>) -> tensor<2x3xi64>
    %2 = "dojo.neg"(%1) : (tensor<2x3xi64>) -> tensor<2x3xi64>
    %3 = "dojo.cmp"(%2, %y) {predicate = "lt"} : (tensor<2x3xi64>, tensor<2x3xi64>) -> tensor<2x3xi1>
    %4 = "dojo.select"(%m, %2, %y) : (tensor<2x3xi1>, tensor<2x3xi64>, tensor<2x3xi64>) -> tensor<2x3xi64>
    %5 = "dojo.reduce_sum"(%4) {dims = array<i64: 1>, keepdim = true} : (tensor<2x3xi64>) -> tensor<2x1xi64>
    %6 = "dojo.broadcast"(%5) : (tensor<2x1xi64>) -> tensor<2x3xi64>
    %7 = "dojo.convert"(%6) : (tensor<2x3xi64>) -> tensor<2x3xf32>
    %8 = "dojo.cmp"(%3, %m) {predicate = "ne"} : (tensor<2x3xi1>, tensor<2x3xi1>) -> tensor<2x3xi1>
    "func.return"(%6, %7, %8) : (tensor<2x3xi64>, tensor<2x3xf32>, tensor<2x3xi1>) -> ()
  }) : () -> ()
}) : () -> ()
"#;
    let mlir = emit(text);
    for want in ["arith.addi", "arith.maxsi", "arith.subi", "arith.cmpi slt", "arith.cmpi ne", "arith.sitofp", "dense<7> : tensor<i64>"] {
        assert!(mlir.contains(want), "emitted MLIR lacks '{want}':\n{mlir}");
    }
    check_with_mlir_opt(&mlir);
}

// ----- parse_with_mlir -----

#[test]
fn parse_with_mlir_reads_our_dumps() {
    let text = r#""builtin.module"() ({
  "func.func"() <{function_type = (tensor<4x4xf32>, tensor<8xf32>) -> (tensor<4x4x!dojo.cf8_143<7>>, tensor<4x4xf32>, tensor<2x4x!dojo.cf16_shp<31>>), sym_name = "f"}> ({
  ^bb0(%arg0: tensor<4x4xf32>, %arg1: tensor<8xf32>):
    %0:2 = "aten.split.Tensor"(%arg0) {dim = 0 : i64, names = ["a", "b"], scale = 1.5 : f64, sizes = array<i64: 2, 2>, weights = array<f64: 0.5, -1.0e-3>} : (tensor<4x4xf32>) -> (tensor<4x4xf32>, tensor<4x4xf32>)
    %1 = "d1.load"(%0#1) {layout = {block = array<i64: 0, 0, 4, 4>, split = array<i64: 0, 1>}} : (tensor<4x4xf32>) -> tensor<4x4x!dojo.cf8_143<7>>
    %2 = "dojo.relu"(%0#0) : (tensor<4x4xf32>) -> tensor<4x4xf32>
    %3 = "dojo.constant"() {value = 0x7FF8000000000000 : f64, ok = true, ty = tensor<2x4x!dojo.cf16_shp<31>>} : () -> tensor<2x4x!dojo.cf16_shp<31>>
    "func.return"(%1, %2, %3) : (tensor<4x4x!dojo.cf8_143<7>>, tensor<4x4xf32>, tensor<2x4x!dojo.cf16_shp<31>>) -> ()
  }) {dojo.mesh = "d1"} : () -> ()
}) {dojo.target = {rows = 2 : i64}} : () -> ()
"#;
    parse_with_mlir(text).unwrap_or_else(|e| panic!("MLIR rejected a valid dump: {e}"));
    // What our printer writes is readable by MLIR.
    let printed = dojo_compiler::print_module(&parse_module(text).unwrap());
    parse_with_mlir(&printed).unwrap_or_else(|e| panic!("MLIR rejected our printer's output: {e}\n{printed}"));
    parse_with_mlir(MLP).expect("graph-level IR parses");
}

#[test]
fn parse_with_mlir_rejects_garbage_with_diagnostics() {
    for bad in [
        "this is not MLIR",
        "\"builtin.module\"() ({",
        "\"builtin.module\"() ({\n  %0 = \"dojo.relu\"(%undefined) : (tensor<2xf32>) -> tensor<2xf32>\n}) : () -> ()",
        // Builtin ops are still checked: func.return must match the function type.
        "\"builtin.module\"() ({\n  \"func.func\"() <{function_type = (tensor<2xf32>) -> tensor<3xf32>, sym_name = \"f\"}> ({\n  ^bb0(%a: tensor<2xf32>):\n    \"func.return\"(%a) : (tensor<2xf32>) -> ()\n  }) : () -> ()\n}) : () -> ()",
        "\"builtin.module\"() ({}) : () -> ()\0",
        "",
    ] {
        match parse_with_mlir(bad) {
            Ok(()) if bad.is_empty() => {} // an empty file is an empty module to MLIR
            Ok(()) => panic!("MLIR accepted garbage: {bad:?}"),
            Err(e) => assert!(!e.is_empty(), "empty error for {bad:?}"),
        }
    }
    let err = parse_with_mlir("\"builtin.module\"() ({\n  %0 = \"dojo.relu\"(%undefined) : (tensor<2xf32>) -> tensor<2xf32>\n}) : () -> ()").unwrap_err();
    assert!(err.contains("undeclared SSA value"), "the diagnostic names the problem: {err}");
}

/// Every graph-level file test emits verified MLIR, and every file test's text is readable
/// by MLIR (the text form is MLIR's generic syntax).
#[test]
fn file_tests_are_mlir() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/filetests");
    let Ok(dirs) = std::fs::read_dir(&root) else {
        println!("note: no file tests at {}", root.display());
        return;
    };
    let mut files: Vec<PathBuf> = dirs
        .flatten()
        .filter(|d| d.path().is_dir())
        .flat_map(|d| std::fs::read_dir(d.path()).into_iter().flatten().flatten().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "mlir"))
        .collect();
    files.sort();
    let mut emitted = 0;
    for path in &files {
        let text = std::fs::read_to_string(path).unwrap();
        let Ok(m) = parse_module(&text) else { continue }; // negative parser tests
        let printed = dojo_compiler::print_module(&m);
        parse_with_mlir(&printed).unwrap_or_else(|e| panic!("{}: MLIR cannot read the dump: {e}", path.display()));
        let graph_level = m.funcs.iter().all(|f| f.ops.iter().all(|o| o.dialect() == "dojo"));
        if graph_level && dojo_compiler::verify(&m).is_ok() {
            let mlir = emit_mlir(&m).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            check_with_mlir_opt(&mlir);
            emitted += 1;
        }
    }
    println!("{} file tests read by MLIR, {emitted} emitted as MLIR", files.len());
}

// ----- numerics: run the emitted MLIR with mlir-runner and compare with the interpreter -----

/// Deterministic test data in [-2, 2) (the interpreter's test data, doubled).
fn data(n: usize, seed: u64) -> Vec<f32> {
    dojo_passes::interp::random_data(n, seed).into_iter().map(|x| x * 2.0).collect()
}

fn tensor_type(shape: &[usize]) -> String {
    let mut s = "tensor<".to_string();
    for d in shape {
        s.push_str(&format!("{d}x"));
    }
    s + "f32>"
}

fn dense(shape: &[usize], data: &[f32]) -> String {
    fn rec(shape: &[usize], data: &[f32]) -> String {
        if shape.is_empty() {
            let x = data[0];
            // MLIR reads a non-finite f32 only as its 32-bit pattern.
            return if x.is_finite() { dojo_compiler::print::float_literal(x as f64) } else { format!("0x{:08X}", x.to_bits()) };
        }
        let step = data.len() / shape[0].max(1);
        let parts: Vec<String> = (0..shape[0]).map(|i| rec(&shape[1..], &data[i * step..(i + 1) * step])).collect();
        format!("[{}]", parts.join(", "))
    }
    format!("dense<{}>", rec(shape, data))
}

/// Lower `mlir` (which defines `@name`, all f32 tensors) with a `main` that calls it on `inputs`
/// and prints every result; returns each result's values, or None if the tools are missing.
fn run_with_mlir_runner(mlir: &str, name: &str, inputs: &[Array], result_shapes: &[Vec<usize>]) -> Option<Vec<Vec<f32>>> {
    let (Some(opt), Some(runner)) = (tool("mlir-opt"), tool("mlir-runner")) else {
        println!("note: mlir-opt/mlir-runner (LLVM 22) not found; skipping the execution check");
        return None;
    };
    let lib = ["/usr/lib/llvm-22/lib/libmlir_c_runner_utils.so", "/usr/lib/llvm-22/lib/libmlir_runner_utils.so"];
    if !lib.iter().all(|l| Path::new(l).is_file()) {
        println!("note: MLIR runner libraries not found; skipping the execution check");
        return None;
    }
    let mut main = String::from("  func.func private @printMemrefF32(tensor<*xf32>)\n  func.func @main() {\n");
    let mut args = Vec::new();
    for (i, a) in inputs.iter().enumerate() {
        main.push_str(&format!("    %in{i} = arith.constant {} : {}\n", dense(&a.shape, &a.data), tensor_type(&a.shape)));
        args.push(format!("%in{i}"));
    }
    let arg_types: Vec<String> = inputs.iter().map(|a| tensor_type(&a.shape)).collect();
    let res_types: Vec<String> = result_shapes.iter().map(|s| tensor_type(s)).collect();
    let results: Vec<String> = (0..result_shapes.len()).map(|i| format!("%r{i}")).collect();
    main.push_str(&format!(
        "    {} = func.call @{name}({}) : ({}) -> ({})\n",
        results.join(", "),
        args.join(", "),
        arg_types.join(", "),
        res_types.join(", ")
    ));
    for (i, t) in res_types.iter().enumerate() {
        main.push_str(&format!("    %u{i} = tensor.cast %r{i} : {t} to tensor<*xf32>\n"));
        main.push_str(&format!("    func.call @printMemrefF32(%u{i}) : (tensor<*xf32>) -> ()\n"));
    }
    main.push_str("    return\n  }\n");
    let end = mlir.rfind('}').expect("module text ends with '}'");
    let program = format!("{}{}}}\n", &mlir[..end], main);
    let (ok, lowered, err) = run_tool(
        &opt,
        &[
            "--one-shot-bufferize=bufferize-function-boundaries",
            "--convert-linalg-to-loops",
            "--expand-strided-metadata",
            "--lower-affine",
            "--convert-scf-to-cf",
            "--convert-to-llvm",
            "--reconcile-unrealized-casts",
        ],
        &program,
    );
    assert!(ok, "mlir-opt could not lower the program:\n{err}\n--- program ---\n{program}");
    let shared = format!("--shared-libs={},{}", lib[0], lib[1]);
    let (ok, out, err) = run_tool(&runner, &["-e", "main", "--entry-point-result=void", &shared], &lowered);
    assert!(ok, "mlir-runner failed:\n{err}");
    // Each result prints as "Unranked Memref ... data = [[...]]"; numbers follow "data =".
    let values: Vec<Vec<f32>> = out
        .split("Unranked Memref")
        .skip(1)
        .map(|chunk| {
            let data = &chunk[chunk.find("data =").expect("data =") + "data =".len()..];
            data.split(|c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '+'))
                .filter(|s| !s.is_empty())
                .map(|s| {
                    if s.trim_start_matches('-').eq_ignore_ascii_case("nan") {
                        f32::NAN
                    } else {
                        s.parse::<f32>().unwrap_or_else(|_| panic!("bad number '{s}' in runner output"))
                    }
                })
                .collect()
        })
        .collect();
    assert_eq!(values.len(), result_shapes.len(), "runner output:\n{out}");
    Some(values)
}

fn compare_with_interpreter(text: &str, seeds: u64) {
    compare_with_interpreter_on(text, |i, n| data(n, seeds + i as u64));
}

fn compare_with_interpreter_on(text: &str, input: impl Fn(usize, usize) -> Vec<f32>) {
    let m = parse_module(text).unwrap();
    let f = &m.funcs[0];
    let inputs: Vec<Array> = f
        .arg_types()
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let dojo_compiler::Type::Tensor(t) = t else { panic!("tensor args only") };
            Array { shape: t.shape.clone(), data: input(i, t.numel()) }
        })
        .collect();
    let want = interp::run(f, &inputs).expect("interpreter runs");
    let shapes: Vec<Vec<usize>> = want.iter().map(|a| a.shape.clone()).collect();
    let mlir = emit_mlir(&m).unwrap();
    let Some(got) = run_with_mlir_runner(&mlir, &f.name, &inputs, &shapes) else { return };
    for (r, (w, g)) in want.iter().zip(&got).enumerate() {
        assert_eq!(w.data.len(), g.len(), "result #{r}: element count");
        for (e, (a, b)) in w.data.iter().zip(g).enumerate() {
            // printMemrefF32 prints 6 significant digits.
            let close = (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() <= 1e-4 * a.abs().max(1.0);
            assert!(close, "result #{r} element {e}: interpreter {a}, MLIR {b}");
        }
    }
}

#[test]
fn emitted_mlir_computes_what_the_interpreter_computes() {
    compare_with_interpreter(MLP, 1);
    compare_with_interpreter(ALL_OPS, 7);
}

/// NaN, infinities and signed zero behave as in the interpreter: relu and maximum/minimum
/// propagate NaN, `ne` is true for NaN, other comparisons false, f32 -> i1 is `x != 0`.
#[test]
fn emitted_mlir_matches_the_interpreter_on_special_values() {
    let text = r#""builtin.module"() ({
  "func.func"() <{function_type = (tensor<6xf32>, tensor<6xf32>) -> (tensor<6xf32>, tensor<6xf32>, tensor<6xf32>, tensor<6xf32>, tensor<6xf32>, tensor<6xf32>, tensor<6xf32>, tensor<6xf32>), sym_name = "special"}> ({
  ^bb0(%a: tensor<6xf32>, %b: tensor<6xf32>):
    %0 = "dojo.relu"(%a) : (tensor<6xf32>) -> tensor<6xf32>
    %1 = "dojo.maximum"(%a, %b) : (tensor<6xf32>, tensor<6xf32>) -> tensor<6xf32>
    %2 = "dojo.minimum"(%a, %b) : (tensor<6xf32>, tensor<6xf32>) -> tensor<6xf32>
    %3 = "dojo.cmp"(%a, %b) {predicate = "ne"} : (tensor<6xf32>, tensor<6xf32>) -> tensor<6xi1>
    %4 = "dojo.convert"(%3) : (tensor<6xi1>) -> tensor<6xf32>
    %5 = "dojo.convert"(%a) : (tensor<6xf32>) -> tensor<6xi1>
    %6 = "dojo.convert"(%5) : (tensor<6xi1>) -> tensor<6xf32>
    %7 = "dojo.cmp"(%a, %b) {predicate = "ge"} : (tensor<6xf32>, tensor<6xf32>) -> tensor<6xi1>
    %8 = "dojo.select"(%7, %a, %b) : (tensor<6xi1>, tensor<6xf32>, tensor<6xf32>) -> tensor<6xf32>
    %9 = "dojo.sigmoid"(%a) : (tensor<6xf32>) -> tensor<6xf32>
    %10 = "dojo.reciprocal"(%a) : (tensor<6xf32>) -> tensor<6xf32>
    %11 = "dojo.constant"() {value = 0x7FF8000000000000 : f64} : () -> tensor<6xf32>
    "func.return"(%0, %1, %2, %4, %6, %8, %9, %10) : (tensor<6xf32>, tensor<6xf32>, tensor<6xf32>, tensor<6xf32>, tensor<6xf32>, tensor<6xf32>, tensor<6xf32>, tensor<6xf32>) -> ()
  }) : () -> ()
}) : () -> ()
"#;
    let a = [f32::NAN, 1.0, -0.0, f32::INFINITY, f32::NEG_INFINITY, 2.0];
    let b = [1.0, f32::NAN, 0.0, 3.0, f32::NEG_INFINITY, 2.0];
    compare_with_interpreter_on(text, |i, _| if i == 0 { a.to_vec() } else { b.to_vec() });
}
