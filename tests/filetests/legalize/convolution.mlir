// RUN: dojo-opt %s --pass-pipeline='legalize-aten,dce,lower-to-d1{mesh=d1:4x4},dce'
/// A grouped, strided, padded convolution and its backward (im2col: the padded input goes
/// channels-last first, [G, P..., N, Cg], every tap a window of it, the taps joined next to
/// the channels, one reshape to the columns [G, M, Cg*T]); the result runs and matches the
/// reference.
"builtin.module"() ({
  "func.func"() <{function_type = (tensor<2x4x9x9xf32>, tensor<6x2x3x3xf32>, tensor<6xf32>, tensor<2x6x5x5xf32>) -> (tensor<2x6x5x5xf32>, tensor<2x4x9x9xf32>, tensor<6x2x3x3xf32>, tensor<6xf32>), sym_name = "f"}> ({
  ^bb0(%x: tensor<2x4x9x9xf32>, %w: tensor<6x2x3x3xf32>, %b: tensor<6xf32>, %gy: tensor<2x6x5x5xf32>):
    %0 = "aten.convolution.default"(%x, %w, %b) {dilation = array<i64: 1, 1>, fx.node = "convolution", groups = 2 : i64, output_padding = array<i64: 0, 0>, padding = array<i64: 1, 1>, stride = array<i64: 2, 2>, transposed = false} : (tensor<2x4x9x9xf32>, tensor<6x2x3x3xf32>, tensor<6xf32>) -> tensor<2x6x5x5xf32>
    %1:3 = "aten.convolution_backward.default"(%gy, %x, %w) {bias_sizes = array<i64: 6>, dilation = array<i64: 1, 1>, fx.node = "convolution_backward", groups = 2 : i64, output_mask = [true, true, true], output_padding = array<i64: 0, 0>, padding = array<i64: 1, 1>, stride = array<i64: 2, 2>, transposed = false} : (tensor<2x6x5x5xf32>, tensor<2x4x9x9xf32>, tensor<6x2x3x3xf32>) -> (tensor<2x4x9x9xf32>, tensor<6x2x3x3xf32>, tensor<6xf32>)
    "func.return"(%0, %1#0, %1#1, %1#2) : (tensor<2x6x5x5xf32>, tensor<2x4x9x9xf32>, tensor<6x2x3x3xf32>, tensor<6xf32>) -> ()
  }) : () -> ()
}) : () -> ()
