// RUN: dojo-opt %s --pass-pipeline='legalize-aten,dce,lower-to-d1{mesh=d1:4x4},dce'
/// What layer norm, softmax, GELU and attention decompose to: amax, var_mean (two results),
/// erf, clamp, bool logic (logical_not, bitwise_and, any) and bmm; lowered and executed
/// against the reference interpreter.
"builtin.module"() ({
  "func.func"() <{function_type = (tensor<2x16x32xf32>, tensor<2x32x8xf32>, tensor<16x32xi1>, tensor<16x32xi1>) -> (tensor<2x16x1xf32>, tensor<2x16x1xf32>, tensor<2x16x1xf32>, tensor<2x16x32xf32>, tensor<2x16x8xf32>, tensor<16x32xi1>, tensor<16xi1>), sym_name = "f"}> ({
  ^bb0(%x: tensor<2x16x32xf32>, %w: tensor<2x32x8xf32>, %p: tensor<16x32xi1>, %q: tensor<16x32xi1>):
    %0 = "aten.amax.default"(%x) {dim = array<i64: -1>, keepdim = true} : (tensor<2x16x32xf32>) -> tensor<2x16x1xf32>
    %1:2 = "aten.var_mean.correction"(%x) {correction = 0 : i64, dim = array<i64: 2>, keepdim = true} : (tensor<2x16x32xf32>) -> (tensor<2x16x1xf32>, tensor<2x16x1xf32>)
    %2 = "aten.erf.default"(%x) : (tensor<2x16x32xf32>) -> tensor<2x16x32xf32>
    %3 = "aten.clamp.default"(%2) {max = 0.5 : f64, min = -0.25 : f64} : (tensor<2x16x32xf32>) -> tensor<2x16x32xf32>
    %4 = "aten.bmm.default"(%3, %w) : (tensor<2x16x32xf32>, tensor<2x32x8xf32>) -> tensor<2x16x8xf32>
    %5 = "aten.logical_not.default"(%p) : (tensor<16x32xi1>) -> tensor<16x32xi1>
    %6 = "aten.bitwise_and.Tensor"(%5, %q) : (tensor<16x32xi1>, tensor<16x32xi1>) -> tensor<16x32xi1>
    %7 = "aten.any.dim"(%6) {dim = 1 : i64, keepdim = false} : (tensor<16x32xi1>) -> tensor<16xi1>
    "func.return"(%0, %1#0, %1#1, %3, %4, %6, %7) : (tensor<2x16x1xf32>, tensor<2x16x1xf32>, tensor<2x16x1xf32>, tensor<2x16x32xf32>, tensor<2x16x8xf32>, tensor<16x32xi1>, tensor<16xi1>) -> ()
  }) : () -> ()
}) : () -> ()
