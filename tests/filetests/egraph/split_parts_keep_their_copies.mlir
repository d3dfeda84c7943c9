// RUN: dojo-opt %s --pass-pipeline='split-batch{mesh=tile parts=2},legalize-aten,dce,egraph-optimize{mesh=tile}'
/// A 3x3 convolution with a bias and relu, split over two chips by `split-batch`: each part
/// has its own copy of the weights' reshape and transpose. Hash-consing makes one value of
/// the identical copies; the rebuilt function computes it again in each part
/// (`per_part_copies`), so each chip prepares its own weights instead of receiving one chip's
/// by reshard: the weights' reshape and the bias's appear once per part.
"builtin.module"() ({
  "func.func"() <{function_type = (tensor<2x4x6x6xf32>, tensor<8x4x3x3xf32>, tensor<8xf32>) -> tensor<2x8x6x6xf32>, sym_name = "forward"}> ({
  ^bb0(%x: tensor<2x4x6x6xf32>, %w: tensor<8x4x3x3xf32>, %b: tensor<8xf32>):
    %0 = "aten.convolution.default"(%x, %w, %b) {dilation = array<i64: 1, 1>, fx.node = "conv", groups = 1 : i64, output_padding = array<i64: 0, 0>, padding = array<i64: 1, 1>, stride = array<i64: 1, 1>, transposed = false} : (tensor<2x4x6x6xf32>, tensor<8x4x3x3xf32>, tensor<8xf32>) -> tensor<2x8x6x6xf32>
    %1 = "aten.relu.default"(%0) {fx.node = "relu"} : (tensor<2x8x6x6xf32>) -> tensor<2x8x6x6xf32>
    "func.return"(%1) : (tensor<2x8x6x6xf32>) -> ()
  }) : () -> ()
}) : () -> ()
