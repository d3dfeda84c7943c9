// RUN: dojo-opt %s --pass-pipeline='legalize-aten,dce,precision{policy=bf16},lower-to-d1{mesh=d1:2x2},dce'
/// bf16 policy: both operands of the batched matmul are rounded to bf16 (bias fixed at 127);
/// the product accumulates in f32 and the bias add stays f32.
"builtin.module"() ({
  "func.func"() <{function_type = (tensor<2x4x8xf32>, tensor<2x8x6xf32>, tensor<6xf32>) -> (tensor<2x4x6xf32>), sym_name = "bmm"}> ({
  ^bb0(%arg0: tensor<2x4x8xf32>, %arg1: tensor<2x8x6xf32>, %arg2: tensor<6xf32>):
    %0 = "aten.bmm.default"(%arg0, %arg1) {fx.node = "bmm"} : (tensor<2x4x8xf32>, tensor<2x8x6xf32>) -> tensor<2x4x6xf32>
    %1 = "aten.add.Tensor"(%0, %arg2) {fx.node = "add"} : (tensor<2x4x6xf32>, tensor<6xf32>) -> tensor<2x4x6xf32>
    "func.return"(%1) : (tensor<2x4x6xf32>) -> ()
  }) : () -> ()
}) : () -> ()
