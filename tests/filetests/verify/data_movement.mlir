// RUN: dojo-opt %s
/// Data-movement ops with impossible shapes are rejected, every one at once.
"builtin.module"() ({
  "func.func"() <{function_type = (tensor<2x16x8xf32>, tensor<2x8x8xf32>) -> (tensor<2x8x8xf32>, tensor<2x17x17xf32>, tensor<2x8x16xf32>), sym_name = "forward"}> ({
  ^bb0(%arg0: tensor<2x16x8xf32>, %arg1: tensor<2x8x8xf32>):
    %0 = "dojo.slice"(%arg0) {offsets = array<i64: 0, 1, 2>, strides = array<i64: 1, 2, 1>} : (tensor<2x16x8xf32>) -> tensor<2x8x8xf32>
    %1 = "dojo.pad"(%arg1) {high = array<i64: 0, 1, 1>, interior = array<i64: 0, 1, 1>, low = array<i64: 0, 1, 2>, value = 0.0 : f64} : (tensor<2x8x8xf32>) -> tensor<2x17x17xf32>
    %2 = "dojo.concat"(%arg0, %arg1) {dim = 2 : i64} : (tensor<2x16x8xf32>, tensor<2x8x8xf32>) -> tensor<2x8x16xf32>
    "func.return"(%0, %1, %2) : (tensor<2x8x8xf32>, tensor<2x17x17xf32>, tensor<2x8x16xf32>) -> ()
  }) : () -> ()
}) : () -> ()
