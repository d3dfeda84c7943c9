// RUN: dojo-opt %s --pass-pipeline='legalize-aten,dce,precision{policy=cfloat8 grads=1},lower-to-d1{mesh=d1:2x2},dce'
/// The cfloat8 step on a 2x2 block: one Convert per shard writes 1-byte cf8 buffers (a scale
/// per tensor in the Program), the SUMMA multicasts move cf8 bytes, and the result equals the
/// interpreter's (which rounds with the same compile-time biases).
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
