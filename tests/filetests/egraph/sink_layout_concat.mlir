// RUN: dojo-opt %s --pass-pipeline='egraph-optimize'
/// sink-layout-concat: a concat of values transposed the same way is the transpose of their
/// concat along the permuted dim (SqueezeNet's fire module joins two convolutions' NCHW
/// results), so the transpose back cancels; `@reshaped`: the same through reshapes that keep
/// the joined axis whole. (The operands are computed, not arguments: a concat of host
/// arguments waits for all their loads, which the cost model counts.)
"builtin.module"() ({
  "func.func"() <{function_type = (tensor<8x4xf32>, tensor<8x6xf32>) -> tensor<8x10xf32>, sym_name = "f"}> ({
  ^bb0(%x: tensor<8x4xf32>, %y: tensor<8x6xf32>):
    %a = "dojo.exp"(%x) : (tensor<8x4xf32>) -> tensor<8x4xf32>
    %b = "dojo.exp"(%y) : (tensor<8x6xf32>) -> tensor<8x6xf32>
    %0 = "dojo.transpose"(%a) {perm = array<i64: 1, 0>} : (tensor<8x4xf32>) -> tensor<4x8xf32>
    %1 = "dojo.transpose"(%b) {perm = array<i64: 1, 0>} : (tensor<8x6xf32>) -> tensor<6x8xf32>
    %2 = "dojo.concat"(%0, %1) {dim = 0 : i64} : (tensor<4x8xf32>, tensor<6x8xf32>) -> tensor<10x8xf32>
    %3 = "dojo.transpose"(%2) {perm = array<i64: 1, 0>} : (tensor<10x8xf32>) -> tensor<8x10xf32>
    "func.return"(%3) : (tensor<8x10xf32>) -> ()
  }) : () -> ()
  "func.func"() <{function_type = (tensor<8x4xf32>, tensor<8x6xf32>) -> tensor<8x10xf32>, sym_name = "reshaped"}> ({
  ^bb0(%x: tensor<8x4xf32>, %y: tensor<8x6xf32>):
    %a = "dojo.exp"(%x) : (tensor<8x4xf32>) -> tensor<8x4xf32>
    %b = "dojo.exp"(%y) : (tensor<8x6xf32>) -> tensor<8x6xf32>
    %0 = "dojo.reshape"(%a) : (tensor<8x4xf32>) -> tensor<1x8x4xf32>
    %1 = "dojo.reshape"(%b) : (tensor<8x6xf32>) -> tensor<1x8x6xf32>
    %2 = "dojo.concat"(%0, %1) {dim = 2 : i64} : (tensor<1x8x4xf32>, tensor<1x8x6xf32>) -> tensor<1x8x10xf32>
    %3 = "dojo.reshape"(%2) : (tensor<1x8x10xf32>) -> tensor<8x10xf32>
    "func.return"(%3) : (tensor<8x10xf32>) -> ()
  }) : () -> ()
}) : () -> ()
