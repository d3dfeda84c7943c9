// RUN: dojo-opt %s --pass-pipeline='split-batch{mesh=tile parts=4},dce'
/// Two weight gradients (72 KiB each, partial sums over 4 parts) that are only returned are
/// summed in pairs a step at a time, so a step's transfer overlaps the parts' next work rather
/// than holding up the receiving chip: the first gradient's first step (parts 1 -> 0 and
/// 3 -> 2) comes after the second gradient is computed; at the end its second step (2 -> 0)
/// comes with the second gradient's first (rooted at part 1: 2 -> 1 and 0 -> 3), then the
/// second's last (3 -> 1). Input and output legalized agree on the interpreter.
"builtin.module"() ({
  "func.func"() <{function_type = (tensor<4x32x4x4xf32>, tensor<64x32x3x3xf32>, tensor<4x64x4x4xf32>, tensor<4x32x4x4xf32>, tensor<4x64x4x4xf32>) -> (tensor<64x32x3x3xf32>, tensor<64x32x3x3xf32>), sym_name = "f"}> ({
  ^bb0(%x: tensor<4x32x4x4xf32>, %w: tensor<64x32x3x3xf32>, %gy: tensor<4x64x4x4xf32>, %x2: tensor<4x32x4x4xf32>, %gy2: tensor<4x64x4x4xf32>):
    %0 = "aten.convolution_backward.default"(%gy, %x, %w) {bias_sizes = array<i64: 64>, dilation = array<i64: 1, 1>, groups = 1 : i64, output_mask = [false, true, false], output_padding = array<i64: 0, 0>, padding = array<i64: 1, 1>, stride = array<i64: 1, 1>, transposed = false} : (tensor<4x64x4x4xf32>, tensor<4x32x4x4xf32>, tensor<64x32x3x3xf32>) -> tensor<64x32x3x3xf32>
    %1 = "aten.convolution_backward.default"(%gy2, %x2, %w) {bias_sizes = array<i64: 64>, dilation = array<i64: 1, 1>, groups = 1 : i64, output_mask = [false, true, false], output_padding = array<i64: 0, 0>, padding = array<i64: 1, 1>, stride = array<i64: 1, 1>, transposed = false} : (tensor<4x64x4x4xf32>, tensor<4x32x4x4xf32>, tensor<64x32x3x3xf32>) -> tensor<64x32x3x3xf32>
    "func.return"(%0, %1) : (tensor<64x32x3x3xf32>, tensor<64x32x3x3xf32>) -> ()
  }) : () -> ()
}) : () -> ()
