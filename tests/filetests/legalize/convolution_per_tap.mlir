// RUN: dojo-opt %s --pass-pipeline='legalize-aten,dce'
/// A convolution whose columns would take 38 MB (64 channels, 3x3, 128 x 128) runs tap by tap:
/// the taps are windows of the channels-last padded input, each reshaped to [G, M, Cg] and
/// multiplied by its [Cg, OCg] slice of the weight; each product after the first adds the sum
/// so far in its matmul's epilogue. No value 9 times the input's size appears. @g's taps would
/// take 17 MB each, more than lowering keeps on one chip: it builds the columns, one matmul
/// by output position (`[1, O..., N, K] @ [K, OC]`: its weights are small).
"builtin.module"() ({
  "func.func"() <{function_type = (tensor<1x64x128x128xf32>, tensor<16x64x3x3xf32>) -> tensor<1x16x128x128xf32>, sym_name = "f"}> ({
  ^bb0(%x: tensor<1x64x128x128xf32>, %w: tensor<16x64x3x3xf32>):
    %0 = "aten.convolution.default"(%x, %w) {dilation = array<i64: 1, 1>, fx.node = "convolution", groups = 1 : i64, output_padding = array<i64: 0, 0>, padding = array<i64: 1, 1>, stride = array<i64: 1, 1>, transposed = false} : (tensor<1x64x128x128xf32>, tensor<16x64x3x3xf32>) -> tensor<1x16x128x128xf32>
    "func.return"(%0) : (tensor<1x16x128x128xf32>) -> ()
  }) : () -> ()
  "func.func"() <{function_type = (tensor<1x64x260x260xf32>, tensor<16x64x3x3xf32>) -> tensor<1x16x260x260xf32>, sym_name = "g"}> ({
  ^bb0(%x: tensor<1x64x260x260xf32>, %w: tensor<16x64x3x3xf32>):
    %0 = "aten.convolution.default"(%x, %w) {dilation = array<i64: 1, 1>, fx.node = "convolution", groups = 1 : i64, output_padding = array<i64: 0, 0>, padding = array<i64: 1, 1>, stride = array<i64: 1, 1>, transposed = false} : (tensor<1x64x260x260xf32>, tensor<16x64x3x3xf32>) -> tensor<1x16x260x260xf32>
    "func.return"(%0) : (tensor<1x16x260x260xf32>) -> ()
  }) : () -> ()
}) : () -> ()
