// RUN: dojo-opt %s --pass-pipeline='legalize-aten,dce,lower-to-d1{mesh=d1:4x4},dce'
/// Strided slice, interior padding and concat on a 2x2 block: each result shard reads the
/// window of its operand it needs (halo included) from its neighbours.
"builtin.module"() ({
  "func.func"() <{function_type = (tensor<2x18x18xf32>, tensor<2x8x8xf32>) -> (tensor<2x8x8xf32>, tensor<2x17x17xf32>, tensor<2x8x16xf32>), sym_name = "forward"}> ({
  ^bb0(%arg0: tensor<2x18x18xf32>, %arg1: tensor<2x8x8xf32>):
    %0 = "dojo.slice"(%arg0) {offsets = array<i64: 0, 1, 2>, strides = array<i64: 1, 2, 2>} : (tensor<2x18x18xf32>) -> tensor<2x8x8xf32>
    %1 = "dojo.pad"(%0) {high = array<i64: 0, 1, 0>, interior = array<i64: 0, 1, 1>, low = array<i64: 0, 1, 2>, value = 0.5 : f64} : (tensor<2x8x8xf32>) -> tensor<2x17x17xf32>
    %2 = "dojo.concat"(%0, %arg1) {dim = 2 : i64} : (tensor<2x8x8xf32>, tensor<2x8x8xf32>) -> tensor<2x8x16xf32>
    "func.return"(%0, %1, %2) : (tensor<2x8x8xf32>, tensor<2x17x17xf32>, tensor<2x8x16xf32>) -> ()
  }) : () -> ()
}) : () -> ()
