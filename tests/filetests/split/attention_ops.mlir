// RUN: dojo-opt %s --pass-pipeline='split-batch{mesh=tile parts=2},dce'
/// The rules for ops along other dims than the batch's: a convolution's output viewed as a
/// sequence, split into two heads (`split_with_sizes`), a batched matmul of one with the
/// other's transpose, softmax over its last dim (as decomposed: amax, sub, exp, sum, div)
/// and a slice of the rows; the batch stays at dim 0 throughout. The input argument is also
/// returned as it is. Input and output legalized agree on the interpreter.
"builtin.module"() ({
  "func.func"() <{function_type = (tensor<4x2x3x3xf32>, tensor<8x2x1x1xf32>) -> (tensor<4x5x9xf32>, tensor<4x2x3x3xf32>), sym_name = "f"}> ({
  ^bb0(%x: tensor<4x2x3x3xf32>, %w: tensor<8x2x1x1xf32>):
    %0 = "aten.convolution.default"(%x, %w) {dilation = array<i64: 1, 1>, groups = 1 : i64, output_padding = array<i64: 0, 0>, padding = array<i64: 0, 0>, stride = array<i64: 1, 1>, transposed = false} : (tensor<4x2x3x3xf32>, tensor<8x2x1x1xf32>) -> tensor<4x8x3x3xf32>
    %1 = "aten.view.default"(%0) {size = array<i64: 4, 8, 9>} : (tensor<4x8x3x3xf32>) -> tensor<4x8x9xf32>
    %2 = "aten.permute.default"(%1) {dims = array<i64: 0, 2, 1>} : (tensor<4x8x9xf32>) -> tensor<4x9x8xf32>
    %3:2 = "aten.split_with_sizes.default"(%2) {dim = 2 : i64, split_sizes = array<i64: 4, 4>} : (tensor<4x9x8xf32>) -> (tensor<4x9x4xf32>, tensor<4x9x4xf32>)
    %4 = "aten.permute.default"(%3#1) {dims = array<i64: 0, 2, 1>} : (tensor<4x9x4xf32>) -> tensor<4x4x9xf32>
    %5 = "aten.bmm.default"(%3#0, %4) : (tensor<4x9x4xf32>, tensor<4x4x9xf32>) -> tensor<4x9x9xf32>
    %6 = "aten.amax.default"(%5) {dim = array<i64: -1>, keepdim = true} : (tensor<4x9x9xf32>) -> tensor<4x9x1xf32>
    %7 = "aten.sub.Tensor"(%5, %6) {alpha = 1 : i64} : (tensor<4x9x9xf32>, tensor<4x9x1xf32>) -> tensor<4x9x9xf32>
    %8 = "aten.exp.default"(%7) : (tensor<4x9x9xf32>) -> tensor<4x9x9xf32>
    %9 = "aten.sum.dim_IntList"(%8) {dim = array<i64: -1>, keepdim = true} : (tensor<4x9x9xf32>) -> tensor<4x9x1xf32>
    %10 = "aten.div.Tensor"(%8, %9) : (tensor<4x9x9xf32>, tensor<4x9x1xf32>) -> tensor<4x9x9xf32>
    %11 = "aten.slice.Tensor"(%10) {dim = 1 : i64, start = 0 : i64, end = 5 : i64, step = 1 : i64} : (tensor<4x9x9xf32>) -> tensor<4x5x9xf32>
    "func.return"(%11, %x) : (tensor<4x5x9xf32>, tensor<4x2x3x3xf32>) -> ()
  }) : () -> ()
}) : () -> ()
