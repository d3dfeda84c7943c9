// RUN: dojo-opt %s --pass-pipeline='egraph-optimize'
/// sink-transpose-<unary>: a transpose moves below an elementwise op to meet and cancel another transpose.
"builtin.module"() ({
  "func.func"() <{function_type = (tensor<16x32xf32>) -> tensor<16x32xf32>, sym_name = "f"}> ({
  ^bb0(%x: tensor<16x32xf32>):
    %0 = "dojo.transpose"(%x) {perm = array<i64: 1, 0>} : (tensor<16x32xf32>) -> tensor<32x16xf32>
    %1 = "dojo.relu"(%0) : (tensor<32x16xf32>) -> tensor<32x16xf32>
    %2 = "dojo.exp"(%1) : (tensor<32x16xf32>) -> tensor<32x16xf32>
    %3 = "dojo.transpose"(%2) {perm = array<i64: 1, 0>} : (tensor<32x16xf32>) -> tensor<16x32xf32>
    "func.return"(%3) : (tensor<16x32xf32>) -> ()
  }) : () -> ()
}) : () -> ()
