// RUN: dojo-opt %s --pass-pipeline='egraph-optimize'
/// sink-transpose-<binary>: f(a^T, b^T) is f(a, b)^T for same-shape operands, so the outer transpose cancels; a broadcast operand blocks it.
"builtin.module"() ({
  "func.func"() <{function_type = (tensor<16x32xf32>, tensor<16x32xf32>, tensor<16xf32>) -> (tensor<16x32xf32>, tensor<32x16xf32>), sym_name = "f"}> ({
  ^bb0(%a: tensor<16x32xf32>, %b: tensor<16x32xf32>, %c: tensor<16xf32>):
    %0 = "dojo.transpose"(%a) {perm = array<i64: 1, 0>} : (tensor<16x32xf32>) -> tensor<32x16xf32>
    %1 = "dojo.transpose"(%b) {perm = array<i64: 1, 0>} : (tensor<16x32xf32>) -> tensor<32x16xf32>
    %2 = "dojo.sub"(%0, %1) : (tensor<32x16xf32>, tensor<32x16xf32>) -> tensor<32x16xf32>
    %3 = "dojo.transpose"(%2) {perm = array<i64: 1, 0>} : (tensor<32x16xf32>) -> tensor<16x32xf32>
    %4 = "dojo.mul"(%0, %c) : (tensor<32x16xf32>, tensor<16xf32>) -> tensor<32x16xf32>
    "func.return"(%3, %4) : (tensor<16x32xf32>, tensor<32x16xf32>) -> ()
  }) : () -> ()
}) : () -> ()
