// RUN: dojo-opt %s --pass-pipeline='legalize-aten,dce,lower-to-d1{mesh=d1:4x4},dce'
/// A convolution's weight gradient over 128 output positions (2 x 8 x 8) splits its
/// contraction into 2 slabs of 64 positions: the gradient rows [1, 128, 4] and the columns
/// [1, 128, 36] reshaped to [2, 64, 4] and [2, 64, 36], one batched matmul of the rows'
/// transpose by the columns ([2, 4, 36], the slabs over mesh rows), and a sum over the slabs
/// back to [1, 4, 36]. The result runs and matches the reference.
"builtin.module"() ({
  "func.func"() <{function_type = (tensor<2x4x8x8xf32>, tensor<4x4x3x3xf32>, tensor<2x4x8x8xf32>) -> (tensor<4x4x3x3xf32>), sym_name = "f"}> ({
  ^bb0(%x: tensor<2x4x8x8xf32>, %w: tensor<4x4x3x3xf32>, %gy: tensor<2x4x8x8xf32>):
    %0 = "aten.convolution_backward.default"(%gy, %x, %w) {bias_sizes = array<i64: 4>, dilation = array<i64: 1, 1>, fx.node = "convolution_backward", groups = 1 : i64, output_mask = [false, true, false], output_padding = array<i64: 0, 0>, padding = array<i64: 1, 1>, stride = array<i64: 1, 1>, transposed = false} : (tensor<2x4x8x8xf32>, tensor<2x4x8x8xf32>, tensor<4x4x3x3xf32>) -> (tensor<4x4x3x3xf32>)
    "func.return"(%0) : (tensor<4x4x3x3xf32>) -> ()
  }) : () -> ()
}) : () -> ()
