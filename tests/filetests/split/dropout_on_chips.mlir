// RUN: dojo-opt %s --pass-pipeline='split-batch{mesh=tile parts=2},legalize-aten,dce,lower-to-d1{mesh=tile},dce'
/// A dropout-like mask drawn per part and kept for the backward (returned), split in two
/// parts on a tile: each part's mask and its product with the part's activations stay on the
/// part's chips (a block of 2 x 5, part 1's from usable row 34). The returned masks are stored
/// part by part, not joined on part 0's chips first, and the mask, the product's first operand,
/// does not pull the product onto part 0's chips. The mask is `u >= 0`, true for every draw, so the Program can be
/// compared with the reference.
"builtin.module"() ({
  "func.func"() <{function_type = (tensor<4x2x3x3xf32>, tensor<2x2x1x1xf32>) -> (tensor<4x2x3x3xf32>, tensor<4x2x3x3xi1>), sym_name = "forward"}> ({
  ^bb0(%x: tensor<4x2x3x3xf32>, %w: tensor<2x2x1x1xf32>):
    %0 = "aten.convolution.default"(%x, %w) {dilation = array<i64: 1, 1>, groups = 1 : i64, output_padding = array<i64: 0, 0>, padding = array<i64: 0, 0>, stride = array<i64: 1, 1>, transposed = false} : (tensor<4x2x3x3xf32>, tensor<2x2x1x1xf32>) -> tensor<4x2x3x3xf32>
    %1 = "aten.rand_like.default"(%0) : (tensor<4x2x3x3xf32>) -> tensor<4x2x3x3xf32>
    %2 = "aten.ge.Scalar"(%1) {other = 0.0 : f64} : (tensor<4x2x3x3xf32>) -> tensor<4x2x3x3xi1>
    %3 = "aten.mul.Tensor"(%2, %0) : (tensor<4x2x3x3xi1>, tensor<4x2x3x3xf32>) -> tensor<4x2x3x3xf32>
    "func.return"(%3, %2) : (tensor<4x2x3x3xf32>, tensor<4x2x3x3xi1>) -> ()
  }) : () -> ()
}) : () -> ()
