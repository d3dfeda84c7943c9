// RUN: dojo-opt %s --pass-pipeline='legalize-aten,dce,egraph-optimize'
/// winograd: a 3x3 convolution (32 -> 32 channels, stride 1, padding 1) on a 5x5 input, as
/// `legalize-aten` writes it (nine windows of the padded input joined into columns, times
/// the weights' 9 x 32 rows). The cost model prefers Winograd's F(2x2, 3x3): the padded
/// input padded once more at the end (5 is odd: three 2x2 output tiles per dim, the last
/// half outside), its 16 stride-2 windows, the input transform (16 fused kernels of 4
/// operands), the weights cut into their 9 taps and transformed in two passes (rows, then
/// columns; 0.5 factors), one batched matmul [16, 9, 32] @ [16, 32, 32] (16 x 9 x 32 x 32
/// multiplies against the columns' 25 x 288 x 32: 2.25x fewer for large inputs, 1.4x here
/// with the padding), the output transform in two passes, the four output phases joined
/// back into rows and columns, and the 5x5 cut out. Equal within f32 tolerance (the
/// transforms round), which the file test checks.
"builtin.module"() ({
  "func.func"() <{function_type = (tensor<1x32x5x5xf32>, tensor<32x32x3x3xf32>) -> tensor<1x32x5x5xf32>, sym_name = "conv"}> ({
  ^bb0(%x: tensor<1x32x5x5xf32>, %w: tensor<32x32x3x3xf32>):
    %0 = "aten.convolution.default"(%x, %w) {dilation = array<i64: 1, 1>, fx.node = "conv", groups = 1 : i64, output_padding = array<i64: 0, 0>, padding = array<i64: 1, 1>, stride = array<i64: 1, 1>, transposed = false} : (tensor<1x32x5x5xf32>, tensor<32x32x3x3xf32>) -> tensor<1x32x5x5xf32>
    "func.return"(%0) : (tensor<1x32x5x5xf32>) -> ()
  }) : () -> ()
}) : () -> ()
