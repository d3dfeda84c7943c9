// RUN: dojo-opt %s --pass-pipeline='legalize-aten,dce,egraph-optimize{mesh=d1:8x8},lower-to-d1{mesh=d1:8x8},dce'
/// The MLP backward graph through the whole pipeline with egraph-optimize: t(t(W)) cancels and
/// the duplicate zero constant merges before lowering; the Program runs and matches the reference.
"builtin.module"() ({
  "func.func"() <{function_type = (tensor<32x64xf32>, tensor<32x128xf32>, tensor<32x128xf32>, tensor<128x10xf32>, tensor<32x10xf32>) -> (tensor<128x64xf32>, tensor<128xf32>, tensor<10x128xf32>, tensor<10xf32>), sym_name = "backward"}> ({
  ^bb0(%arg0: tensor<32x64xf32>, %arg1: tensor<32x128xf32>, %arg2: tensor<32x128xf32>, %arg3: tensor<128x10xf32>, %arg4: tensor<32x10xf32>):
    %0 = "aten.permute.default"(%arg3) {dims = array<i64: 1, 0>, fx.node = "permute_2"} : (tensor<128x10xf32>) -> tensor<10x128xf32>
    %1 = "aten.mm.default"(%arg4, %0) {fx.node = "mm"} : (tensor<32x10xf32>, tensor<10x128xf32>) -> tensor<32x128xf32>
    %2 = "aten.permute.default"(%arg4) {dims = array<i64: 1, 0>, fx.node = "permute_3"} : (tensor<32x10xf32>) -> tensor<10x32xf32>
    %3 = "aten.mm.default"(%2, %arg1) {fx.node = "mm_1"} : (tensor<10x32xf32>, tensor<32x128xf32>) -> tensor<10x128xf32>
    %4 = "aten.permute.default"(%3) {dims = array<i64: 1, 0>, fx.node = "permute_4"} : (tensor<10x128xf32>) -> tensor<128x10xf32>
    %5 = "aten.sum.dim_IntList"(%arg4) {dim = array<i64: 0>, fx.node = "sum_1", keepdim = true} : (tensor<32x10xf32>) -> tensor<1x10xf32>
    %6 = "aten.view.default"(%5) {fx.node = "view", size = array<i64: 10>} : (tensor<1x10xf32>) -> tensor<10xf32>
    %7 = "aten.permute.default"(%4) {dims = array<i64: 1, 0>, fx.node = "permute_5"} : (tensor<128x10xf32>) -> tensor<10x128xf32>
    %8 = "aten.alias.default"(%arg2) {fx.node = "alias_1"} : (tensor<32x128xf32>) -> tensor<32x128xf32>
    %9 = "aten.le.Scalar"(%8) {fx.node = "le", other = 0 : i64} : (tensor<32x128xf32>) -> tensor<32x128xi1>
    %10 = "aten.scalar_tensor.default"() {device = "cpu", dtype = "f32", fx.node = "scalar_tensor", layout = "torch.strided", s = 0 : i64} : () -> tensor<f32>
    %11 = "aten.where.self"(%9, %10, %1) {fx.node = "where"} : (tensor<32x128xi1>, tensor<f32>, tensor<32x128xf32>) -> tensor<32x128xf32>
    %12 = "aten.permute.default"(%11) {dims = array<i64: 1, 0>, fx.node = "permute_6"} : (tensor<32x128xf32>) -> tensor<128x32xf32>
    %13 = "aten.mm.default"(%12, %arg0) {fx.node = "mm_2"} : (tensor<128x32xf32>, tensor<32x64xf32>) -> tensor<128x64xf32>
    %14 = "aten.sum.dim_IntList"(%11) {dim = array<i64: 0>, fx.node = "sum_2", keepdim = true} : (tensor<32x128xf32>) -> tensor<1x128xf32>
    %15 = "aten.view.default"(%14) {fx.node = "view_1", size = array<i64: 128>} : (tensor<1x128xf32>) -> tensor<128xf32>
    "func.return"(%13, %15, %7, %6) : (tensor<128x64xf32>, tensor<128xf32>, tensor<10x128xf32>, tensor<10xf32>) -> ()
  }) : () -> ()
}) : () -> ()
