// RUN: dojo-opt %s --pass-pipeline='legalize-aten,dce,egraph-optimize'
/// layout-compose, sink-layout-pad: two 3x3 convolutions with a bias and relu between, as
/// `legalize-aten` writes them (each conv a matmul between NCHW -> [G, H, W, N, C] and back):
/// the first conv's result stays in the matmul's layout for the second conv's padding and
/// taps; the only transposes left are the weights' and the last result's to NCHW.
"builtin.module"() ({
  "func.func"() <{function_type = (tensor<1x4x8x8xf32>, tensor<8x4x3x3xf32>, tensor<8xf32>, tensor<8x8x3x3xf32>) -> tensor<1x8x8x8xf32>, sym_name = "f"}> ({
  ^bb0(%x: tensor<1x4x8x8xf32>, %w1: tensor<8x4x3x3xf32>, %b1: tensor<8xf32>, %w2: tensor<8x8x3x3xf32>):
    %0 = "aten.convolution.default"(%x, %w1, %b1) {dilation = array<i64: 1, 1>, fx.node = "conv1", groups = 1 : i64, output_padding = array<i64: 0, 0>, padding = array<i64: 1, 1>, stride = array<i64: 1, 1>, transposed = false} : (tensor<1x4x8x8xf32>, tensor<8x4x3x3xf32>, tensor<8xf32>) -> tensor<1x8x8x8xf32>
    %1 = "aten.relu.default"(%0) {fx.node = "relu"} : (tensor<1x8x8x8xf32>) -> tensor<1x8x8x8xf32>
    %2 = "aten.convolution.default"(%1, %w2) {dilation = array<i64: 1, 1>, fx.node = "conv2", groups = 1 : i64, output_padding = array<i64: 0, 0>, padding = array<i64: 1, 1>, stride = array<i64: 1, 1>, transposed = false} : (tensor<1x8x8x8xf32>, tensor<8x8x3x3xf32>) -> tensor<1x8x8x8xf32>
    "func.return"(%2) : (tensor<1x8x8x8xf32>) -> ()
  }) : () -> ()
}) : () -> ()
