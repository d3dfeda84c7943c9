// RUN: dojo-opt %s --pass-pipeline='egraph-optimize'
/// concat-of-slices: slices of one value joined again in order are that value (%all), or one
/// slice of it (%mid); column windows of one product joined in another order are one product
/// with the weight's columns in that order (%swapped: no copy of the product).
"builtin.module"() ({
  "func.func"() <{function_type = (tensor<64x16xf32>, tensor<16x16xf32>) -> (tensor<64x16xf32>, tensor<64x12xf32>, tensor<64x16xf32>), sym_name = "f"}> ({
  ^bb0(%x: tensor<64x16xf32>, %a: tensor<16x16xf32>):
    %y = "dojo.tanh"(%x) : (tensor<64x16xf32>) -> tensor<64x16xf32>
    %s0 = "dojo.slice"(%y) {offsets = array<i64: 0, 0>, strides = array<i64: 1, 1>} : (tensor<64x16xf32>) -> tensor<64x4xf32>
    %s1 = "dojo.slice"(%y) {offsets = array<i64: 0, 4>, strides = array<i64: 1, 1>} : (tensor<64x16xf32>) -> tensor<64x4xf32>
    %s2 = "dojo.slice"(%y) {offsets = array<i64: 0, 8>, strides = array<i64: 1, 1>} : (tensor<64x16xf32>) -> tensor<64x8xf32>
    %all = "dojo.concat"(%s0, %s1, %s2) {dim = 1 : i64} : (tensor<64x4xf32>, tensor<64x4xf32>, tensor<64x8xf32>) -> tensor<64x16xf32>
    %mid = "dojo.concat"(%s1, %s2) {dim = 1 : i64} : (tensor<64x4xf32>, tensor<64x8xf32>) -> tensor<64x12xf32>
    %w = "dojo.tanh"(%a) : (tensor<16x16xf32>) -> tensor<16x16xf32>
    %p = "dojo.matmul"(%y, %w) : (tensor<64x16xf32>, tensor<16x16xf32>) -> tensor<64x16xf32>
    %lo = "dojo.slice"(%p) {offsets = array<i64: 0, 0>, strides = array<i64: 1, 1>} : (tensor<64x16xf32>) -> tensor<64x8xf32>
    %hi = "dojo.slice"(%p) {offsets = array<i64: 0, 8>, strides = array<i64: 1, 1>} : (tensor<64x16xf32>) -> tensor<64x8xf32>
    %swapped = "dojo.concat"(%hi, %lo) {dim = 1 : i64} : (tensor<64x8xf32>, tensor<64x8xf32>) -> tensor<64x16xf32>
    "func.return"(%all, %mid, %swapped) : (tensor<64x16xf32>, tensor<64x12xf32>, tensor<64x16xf32>) -> ()
  }) : () -> ()
}) : () -> ()
