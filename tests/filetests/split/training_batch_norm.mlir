// RUN: dojo-opt %s --pass-pipeline='split-batch{mesh=tile parts=2},dce'
/// Training: a batch norm's statistics over the batch (`var_mean` over dims 0, 2, 3) come
/// from one exchange (each part's sum and squared deviations from its own mean, stacked; the
/// variance adds the spread of the parts' means), and
/// a convolution's weight and bias gradients are partial sums: the 72 KiB weight gradient
/// summed in pairs (part 1's share moved to part 0's chip), the bias gradient gathered and
/// reduced. Input and output legalized agree on the interpreter.
"builtin.module"() ({
  "func.func"() <{function_type = (tensor<4x32x4x4xf32>, tensor<64x32x3x3xf32>, tensor<4x64x4x4xf32>) -> (tensor<4x64x4x4xf32>, tensor<1x64x1x1xf32>, tensor<64x32x3x3xf32>, tensor<64xf32>), sym_name = "f"}> ({
  ^bb0(%x: tensor<4x32x4x4xf32>, %w: tensor<64x32x3x3xf32>, %gy: tensor<4x64x4x4xf32>):
    %0 = "aten.convolution.default"(%x, %w) {dilation = array<i64: 1, 1>, groups = 1 : i64, output_padding = array<i64: 0, 0>, padding = array<i64: 1, 1>, stride = array<i64: 1, 1>, transposed = false} : (tensor<4x32x4x4xf32>, tensor<64x32x3x3xf32>) -> tensor<4x64x4x4xf32>
    %1:2 = "aten.var_mean.correction"(%0) {correction = 0 : i64, dim = array<i64: 0, 2, 3>, keepdim = true} : (tensor<4x64x4x4xf32>) -> (tensor<1x64x1x1xf32>, tensor<1x64x1x1xf32>)
    %2 = "aten.add.Tensor"(%1#0) {alpha = 1 : i64, other = 1.0e-05 : f64} : (tensor<1x64x1x1xf32>) -> tensor<1x64x1x1xf32>
    %3 = "aten.rsqrt.default"(%2) : (tensor<1x64x1x1xf32>) -> tensor<1x64x1x1xf32>
    %4 = "aten.sub.Tensor"(%0, %1#1) {alpha = 1 : i64} : (tensor<4x64x4x4xf32>, tensor<1x64x1x1xf32>) -> tensor<4x64x4x4xf32>
    %5 = "aten.mul.Tensor"(%4, %3) : (tensor<4x64x4x4xf32>, tensor<1x64x1x1xf32>) -> tensor<4x64x4x4xf32>
    %6:2 = "aten.convolution_backward.default"(%gy, %x, %w) {bias_sizes = array<i64: 64>, dilation = array<i64: 1, 1>, groups = 1 : i64, output_mask = [false, true, true], output_padding = array<i64: 0, 0>, padding = array<i64: 1, 1>, stride = array<i64: 1, 1>, transposed = false} : (tensor<4x64x4x4xf32>, tensor<4x32x4x4xf32>, tensor<64x32x3x3xf32>) -> (tensor<64x32x3x3xf32>, tensor<64xf32>)
    "func.return"(%5, %1#1, %6#0, %6#1) : (tensor<4x64x4x4xf32>, tensor<1x64x1x1xf32>, tensor<64x32x3x3xf32>, tensor<64xf32>) -> ()
  }) : () -> ()
}) : () -> ()
