// RUN: dojo-opt %s --pass-pipeline='legalize-aten,dce,lower-to-d1{mesh=d1:4x4},dce'
/// Training dropout as AOTAutograd decomposes it: `rand_like` becomes `dojo.random` (stream 0),
/// split over the block like any tensor; every shard draws the values of its own box, so the
/// mask equals the interpreter's whatever the split.
"builtin.module"() ({
  "func.func"() <{function_type = (tensor<16x24xf32>) -> (tensor<16x24xf32>, tensor<16x24xi1>), sym_name = "dropout"}> ({
  ^bb0(%arg0: tensor<16x24xf32>):
    %0 = "aten.rand_like.default"(%arg0) {fx.node = "rand_like", pin_memory = false} : (tensor<16x24xf32>) -> tensor<16x24xf32>
    %1 = "aten.gt.Scalar"(%0) {fx.node = "gt", other = 2.500000e-01 : f64} : (tensor<16x24xf32>) -> tensor<16x24xi1>
    %2 = "aten.mul.Tensor"(%1, %arg0) {fx.node = "mul"} : (tensor<16x24xi1>, tensor<16x24xf32>) -> tensor<16x24xf32>
    %3 = "aten.mul.Tensor"(%2) {fx.node = "mul_1", other = 1.3333333333333333 : f64} : (tensor<16x24xf32>) -> tensor<16x24xf32>
    "func.return"(%3, %1) : (tensor<16x24xf32>, tensor<16x24xi1>) -> ()
  }) : () -> ()
}) : () -> ()
