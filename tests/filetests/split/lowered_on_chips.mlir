// RUN: dojo-opt %s --pass-pipeline='split-batch{mesh=tile parts=2},legalize-aten,dce,lower-to-d1{mesh=tile},dce'
/// The same CNN split in two parts (`parts=2`: samples 0-1 and 2-4) and lowered for a tile:
/// each part's ops on its own block of 2 x 5 chips (`dojo.part_chips`: part 0's at the grid's
/// origin, part 1's from usable row 34), each loading only its box of the input and its own copy of the weights; the
/// logits stored part by part. The Program matches the reference on the simulator (the running
/// variance squared, so that random inputs give no NaN).
"builtin.module"() ({
  "func.func"() <{function_type = (tensor<5x2x6x6xf32>, tensor<3x2x3x3xf32>, tensor<3xf32>, tensor<3xf32>, tensor<3xf32>, tensor<3xf32>, tensor<4x3xf32>, tensor<4xf32>) -> (tensor<5x4xf32>), sym_name = "inference"}> ({
  ^bb0(%x: tensor<5x2x6x6xf32>, %w: tensor<3x2x3x3xf32>, %g: tensor<3xf32>, %b: tensor<3xf32>, %m: tensor<3xf32>, %v: tensor<3xf32>, %fw: tensor<4x3xf32>, %fb: tensor<4xf32>):
    %0 = "aten.convolution.default"(%x, %w) {dilation = array<i64: 1, 1>, groups = 1 : i64, output_padding = array<i64: 0, 0>, padding = array<i64: 1, 1>, stride = array<i64: 1, 1>, transposed = false} : (tensor<5x2x6x6xf32>, tensor<3x2x3x3xf32>) -> tensor<5x3x6x6xf32>
    %vv = "aten.mul.Tensor"(%v, %v) : (tensor<3xf32>, tensor<3xf32>) -> tensor<3xf32>
    %1:3 = "aten._native_batch_norm_legit_no_training.default"(%0, %g, %b, %m, %vv) {eps = 1.0e-5 : f64, momentum = 0.1 : f64} : (tensor<5x3x6x6xf32>, tensor<3xf32>, tensor<3xf32>, tensor<3xf32>, tensor<3xf32>) -> (tensor<5x3x6x6xf32>, tensor<0xf32>, tensor<0xf32>)
    %2 = "aten.relu.default"(%1#0) : (tensor<5x3x6x6xf32>) -> tensor<5x3x6x6xf32>
    %3:2 = "aten.max_pool2d_with_indices.default"(%2) {ceil_mode = false, dilation = array<i64: 1, 1>, kernel_size = array<i64: 2, 2>, padding = array<i64: 0, 0>, stride = array<i64: 2, 2>} : (tensor<5x3x6x6xf32>) -> (tensor<5x3x3x3xf32>, tensor<5x3x3x3xi64>)
    %4 = "aten.add.Tensor"(%3#0, %3#0) {alpha = 1 : i64} : (tensor<5x3x3x3xf32>, tensor<5x3x3x3xf32>) -> tensor<5x3x3x3xf32>
    %5 = "aten.mean.dim"(%4) {dim = array<i64: -1, -2>, keepdim = true} : (tensor<5x3x3x3xf32>) -> tensor<5x3x1x1xf32>
    %6 = "aten.view.default"(%5) {size = array<i64: 5, 3>} : (tensor<5x3x1x1xf32>) -> tensor<5x3xf32>
    %7 = "aten.permute.default"(%fw) {dims = array<i64: 1, 0>} : (tensor<4x3xf32>) -> tensor<3x4xf32>
    %8 = "aten.addmm.default"(%fb, %6, %7) {alpha = 1 : i64, beta = 1 : i64} : (tensor<4xf32>, tensor<5x3xf32>, tensor<3x4xf32>) -> tensor<5x4xf32>
    "func.return"(%8) : (tensor<5x4xf32>) -> ()
  }) : () -> ()
}) : () -> ()
