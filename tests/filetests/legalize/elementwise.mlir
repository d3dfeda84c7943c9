// RUN: dojo-opt %s --pass-pipeline=legalize-aten
/// Scalar overloads become constants, alpha/beta become multiplies, mean is a sum divided by
/// the count, threshold_backward is a select, expand is a broadcast, identities vanish.
"builtin.module"() ({
  "func.func"() <{function_type = (tensor<4x8xf32>, tensor<8xf32>, tensor<4x8xf32>) -> (tensor<4x8xf32>, tensor<4xf32>, tensor<4x8xf32>, tensor<3x4x8xf32>), sym_name = "f"}> ({
  ^bb0(%x: tensor<4x8xf32>, %b: tensor<8xf32>, %y: tensor<4x8xf32>):
    %0 = "aten.add.Tensor"(%x, %b) {alpha = 2.0 : f64} : (tensor<4x8xf32>, tensor<8xf32>) -> tensor<4x8xf32>
    %1 = "aten.mul.Scalar"(%0) {other = 0.5 : f64} : (tensor<4x8xf32>) -> tensor<4x8xf32>
    %2 = "aten.mean.dim"(%1) {dim = array<i64: -1>, keepdim = false} : (tensor<4x8xf32>) -> tensor<4xf32>
    %3 = "aten.threshold_backward.default"(%y, %x) {threshold = 0 : i64} : (tensor<4x8xf32>, tensor<4x8xf32>) -> tensor<4x8xf32>
    %4 = "aten.clone.default"(%3) : (tensor<4x8xf32>) -> tensor<4x8xf32>
    %5 = "aten.expand.default"(%4) {size = array<i64: 3, 4, 8>} : (tensor<4x8xf32>) -> tensor<3x4x8xf32>
    %6 = "aten.sigmoid.default"(%x) : (tensor<4x8xf32>) -> tensor<4x8xf32>
    "func.return"(%6, %2, %4, %5) : (tensor<4x8xf32>, tensor<4xf32>, tensor<4x8xf32>, tensor<3x4x8xf32>) -> ()
  }) : () -> ()
}) : () -> ()
