// RUN: dojo-opt %s --pass-pipeline='legalize-aten,dce,precision{policy=cfloat8 grads=1}'
/// cfloat8 policy: forward matmul operands become cf8_143 (the weight's convert names its
/// input, so its bias can come from the weight's values), the gradient operand of the
/// backward matmuls cf8_152; the products stay f32.
"builtin.module"() ({
  "func.func"() <{function_type = (tensor<16x32xf32>, tensor<8x32xf32>, tensor<8x16xf32>) -> (tensor<8x16xf32>, tensor<8x32xf32>, tensor<16x32xf32>), sym_name = "step"}> ({
  ^bb0(%arg0: tensor<16x32xf32>, %arg1: tensor<8x32xf32>, %arg2: tensor<8x16xf32>):
    %0 = "aten.permute.default"(%arg0) {dims = array<i64: 1, 0>, fx.node = "permute"} : (tensor<16x32xf32>) -> tensor<32x16xf32>
    %1 = "aten.mm.default"(%arg1, %0) {fx.node = "mm"} : (tensor<8x32xf32>, tensor<32x16xf32>) -> tensor<8x16xf32>
    %2 = "aten.mm.default"(%arg2, %arg0) {fx.node = "mm_grad_input"} : (tensor<8x16xf32>, tensor<16x32xf32>) -> tensor<8x32xf32>
    %3 = "aten.permute.default"(%arg2) {dims = array<i64: 1, 0>, fx.node = "permute_1"} : (tensor<8x16xf32>) -> tensor<16x8xf32>
    %4 = "aten.mm.default"(%3, %arg1) {fx.node = "mm_grad_weight"} : (tensor<16x8xf32>, tensor<8x32xf32>) -> tensor<16x32xf32>
    "func.return"(%1, %2, %4) : (tensor<8x16xf32>, tensor<8x32xf32>, tensor<16x32xf32>) -> ()
  }) : () -> ()
}) : () -> ()
