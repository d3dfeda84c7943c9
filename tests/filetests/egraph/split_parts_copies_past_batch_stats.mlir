// RUN: dojo-opt %s --pass-pipeline='split-batch{mesh=tile parts=2},legalize-aten,dce,egraph-optimize{mesh=tile}'
/// Two 3x3 convolutions, the second on the first's output less its mean over the batch (as a
/// training batch norm centres it), split over two chips by `split-batch`: the mean joins
/// both parts' statistics, and each part's centred values join its chip's values with it. They
/// stay on their part's chip, as `lower-to-d1` places them, so `per_part_copies` still gives
/// each part its own reshape of the second weight (one per part below, as for the first),
/// rather than one shared copy that one chip computes and the other receives by reshard
/// (resnet18's training at 8 x 112 x 112 on `tile`, the pass on, shared -> per part: forward
/// 414.5 -> 192.6 us, backward 860.1 -> 474.3 us).
"builtin.module"() ({
  "func.func"() <{function_type = (tensor<2x4x6x6xf32>, tensor<8x4x3x3xf32>, tensor<8x8x3x3xf32>) -> tensor<2x8x6x6xf32>, sym_name = "forward"}> ({
  ^bb0(%x: tensor<2x4x6x6xf32>, %w1: tensor<8x4x3x3xf32>, %w2: tensor<8x8x3x3xf32>):
    %0 = "aten.convolution.default"(%x, %w1) {dilation = array<i64: 1, 1>, fx.node = "conv", groups = 1 : i64, output_padding = array<i64: 0, 0>, padding = array<i64: 1, 1>, stride = array<i64: 1, 1>, transposed = false} : (tensor<2x4x6x6xf32>, tensor<8x4x3x3xf32>) -> tensor<2x8x6x6xf32>
    %1:2 = "aten.var_mean.correction"(%0) {correction = 0 : i64, dim = array<i64: 0, 2, 3>, fx.node = "var_mean", keepdim = true} : (tensor<2x8x6x6xf32>) -> (tensor<1x8x1x1xf32>, tensor<1x8x1x1xf32>)
    %2 = "aten.sub.Tensor"(%0, %1#1) {fx.node = "sub"} : (tensor<2x8x6x6xf32>, tensor<1x8x1x1xf32>) -> tensor<2x8x6x6xf32>
    %3 = "aten.convolution.default"(%2, %w2) {dilation = array<i64: 1, 1>, fx.node = "conv_1", groups = 1 : i64, output_padding = array<i64: 0, 0>, padding = array<i64: 1, 1>, stride = array<i64: 1, 1>, transposed = false} : (tensor<2x8x6x6xf32>, tensor<8x8x3x3xf32>) -> tensor<2x8x6x6xf32>
    "func.return"(%3) : (tensor<2x8x6x6xf32>) -> ()
  }) : () -> ()
}) : () -> ()
