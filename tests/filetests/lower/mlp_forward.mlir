// RUN: dojo-opt %s --pass-pipeline='legalize-aten,dce,lower-to-d1{mesh=d1},dce'
/// The MLP forward of the foundation test (Linear 64->128, ReLU, Linear 128->10, batch 32):
/// the first matmul is SUMMA over a 4x16 block with explicit row/column multicasts.
"builtin.module"() ({
  "func.func"() <{function_type = (tensor<128x64xf32>, tensor<128xf32>, tensor<32x64xf32>, tensor<10x128xf32>, tensor<10xf32>) -> (tensor<32x10xf32>, tensor<32x64xf32>, tensor<32x128xf32>, tensor<128x10xf32>), sym_name = "forward"}> ({
  ^bb0(%arg0: tensor<128x64xf32>, %arg1: tensor<128xf32>, %arg2: tensor<32x64xf32>, %arg3: tensor<10x128xf32>, %arg4: tensor<10xf32>):
    %0 = "aten.permute.default"(%arg0) {dims = array<i64: 1, 0>, fx.node = "permute"} : (tensor<128x64xf32>) -> tensor<64x128xf32>
    %1 = "aten.addmm.default"(%arg1, %arg2, %0) {alpha = 1 : i64, beta = 1 : i64, fx.node = "addmm"} : (tensor<128xf32>, tensor<32x64xf32>, tensor<64x128xf32>) -> tensor<32x128xf32>
    %2 = "aten.relu.default"(%1) {fx.node = "relu"} : (tensor<32x128xf32>) -> tensor<32x128xf32>
    %3 = "aten.alias.default"(%2) {fx.node = "alias"} : (tensor<32x128xf32>) -> tensor<32x128xf32>
    %4 = "aten.permute.default"(%arg3) {dims = array<i64: 1, 0>, fx.node = "permute_1"} : (tensor<10x128xf32>) -> tensor<128x10xf32>
    %5 = "aten.addmm.default"(%arg4, %2, %4) {alpha = 1 : i64, beta = 1 : i64, fx.node = "addmm_1"} : (tensor<10xf32>, tensor<32x128xf32>, tensor<128x10xf32>) -> tensor<32x10xf32>
    "func.return"(%5, %arg2, %3, %4) : (tensor<32x10xf32>, tensor<32x64xf32>, tensor<32x128xf32>, tensor<128x10xf32>) -> ()
  }) : () -> ()
}) : () -> ()
