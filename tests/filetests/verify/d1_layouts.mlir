// RUN: dojo-opt %s
/// Mesh-level rules: matmul operands must be whole along K on every core, map operands on the
/// result's block, and results returned only after d1.store; all errors are reported at once.
"builtin.module"() ({
  "func.func"() <{function_type = (tensor<8x8xf32>) -> (tensor<8x8xf32>), sym_name = "f"}> ({
  ^bb0(%a: tensor<8x8xf32>):
    %0 = "d1.load"(%a) {layout = {block = array<i64: 0, 0, 2, 2>, split = array<i64: 0, 1>}} : (tensor<8x8xf32>) -> tensor<8x8xf32>
    %1 = "d1.matmul"(%0, %0) {layout = {block = array<i64: 0, 0, 2, 2>, split = array<i64: 0, 1>}} : (tensor<8x8xf32>, tensor<8x8xf32>) -> tensor<8x8xf32>
    %2 = "d1.map"(%0) {fn = "relu", layout = {block = array<i64: 2, 2, 2, 2>, split = array<i64: 0, 1>}} : (tensor<8x8xf32>) -> tensor<8x8xf32>
    %3 = "d1.fill"() {value = 1.0 : f64, layout = {block = array<i64: 0, 0, 16, 1>, split = array<i64: 0, 1>}} : () -> tensor<8x8xf32>
    "func.return"(%2) : (tensor<8x8xf32>) -> ()
  }) : () -> ()
}) : () -> ()
