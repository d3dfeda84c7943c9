// RUN: dojo-opt %s --pass-pipeline='split-batch{mesh=tile},dce'
/// A graph taking the maximum over the batch (no rule combines the parts' maxima yet) is
/// left whole: the function's `dojo.split` attribute names the op.
"builtin.module"() ({
  "func.func"() <{function_type = (tensor<4x2x5x5xf32>, tensor<3x2x1x1xf32>) -> (tensor<3x5x5xf32>), sym_name = "forward"}> ({
  ^bb0(%x: tensor<4x2x5x5xf32>, %w: tensor<3x2x1x1xf32>):
    %0 = "aten.convolution.default"(%x, %w) {dilation = array<i64: 1, 1>, groups = 1 : i64, output_padding = array<i64: 0, 0>, padding = array<i64: 0, 0>, stride = array<i64: 1, 1>, transposed = false} : (tensor<4x2x5x5xf32>, tensor<3x2x1x1xf32>) -> tensor<4x3x5x5xf32>
    %1 = "aten.amax.default"(%0) {dim = array<i64: 0>, keepdim = false} : (tensor<4x3x5x5xf32>) -> tensor<3x5x5xf32>
    "func.return"(%1) : (tensor<3x5x5xf32>) -> ()
  }) : () -> ()
}) : () -> ()
