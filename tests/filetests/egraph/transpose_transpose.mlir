// RUN: dojo-opt %s --pass-pipeline='egraph-optimize'
/// transpose-transpose: two transposes compose into one, or cancel when the composition is the identity.
"builtin.module"() ({
  "func.func"() <{function_type = (tensor<2x8x16xf32>, tensor<16x32xf32>) -> (tensor<16x2x8xf32>, tensor<16x32xf32>), sym_name = "f"}> ({
  ^bb0(%x: tensor<2x8x16xf32>, %y: tensor<16x32xf32>):
    %0 = "dojo.transpose"(%x) {perm = array<i64: 0, 2, 1>} : (tensor<2x8x16xf32>) -> tensor<2x16x8xf32>
    %1 = "dojo.transpose"(%0) {perm = array<i64: 1, 0, 2>} : (tensor<2x16x8xf32>) -> tensor<16x2x8xf32>
    %2 = "dojo.transpose"(%y) {perm = array<i64: 1, 0>} : (tensor<16x32xf32>) -> tensor<32x16xf32>
    %3 = "dojo.transpose"(%2) {perm = array<i64: 1, 0>} : (tensor<32x16xf32>) -> tensor<16x32xf32>
    "func.return"(%1, %3) : (tensor<16x2x8xf32>, tensor<16x32xf32>) -> ()
  }) : () -> ()
}) : () -> ()
