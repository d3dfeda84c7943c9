// RUN: dojo-opt %s --pass-pipeline='egraph-optimize'
/// slice-of-concat: a slice that cuts out exactly one operand of a concat is that operand.
"builtin.module"() ({
  "func.func"() <{function_type = (tensor<64x8xf32>, tensor<64x4xf32>) -> (tensor<64x16xf32>, tensor<64x4xf32>), sym_name = "f"}> ({
  ^bb0(%a: tensor<64x8xf32>, %b: tensor<64x4xf32>):
    %ta = "dojo.tanh"(%a) : (tensor<64x8xf32>) -> tensor<64x8xf32>
    %tb = "dojo.tanh"(%b) : (tensor<64x4xf32>) -> tensor<64x4xf32>
    %c = "dojo.concat"(%tb, %ta, %tb) {dim = 1 : i64} : (tensor<64x4xf32>, tensor<64x8xf32>, tensor<64x4xf32>) -> tensor<64x16xf32>
    %s = "dojo.slice"(%c) {offsets = array<i64: 0, 12>, strides = array<i64: 1, 1>} : (tensor<64x16xf32>) -> tensor<64x4xf32>
    %e = "dojo.exp"(%s) : (tensor<64x4xf32>) -> tensor<64x4xf32>
    "func.return"(%c, %e) : (tensor<64x16xf32>, tensor<64x4xf32>) -> ()
  }) : () -> ()
}) : () -> ()
