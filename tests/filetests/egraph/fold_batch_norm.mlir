// RUN: dojo-opt %s --pass-pipeline='egraph-optimize'
/// fold-scale-into-matmul, merge-scales, distribute-scale-<g>, merge-shifts-<f>-<g>, sink-reshape-broadcast-<binary>, sink-transpose-broadcast-<binary>:
/// @conv_bn_relu: an inference batch norm after a 3x3 conv (8 -> 16 channels, 32x32), as
/// `legalize-aten` writes them (the conv's matmul of columns and transposed weights, its
/// result brought to NCHW by reshape, transpose, reshape; then sub mean, mul rsqrt(var + eps),
/// mul gamma, add beta per channel), then relu. The per-channel operands sink to the
/// matmul's columns, the scales fold into the weights (one [72x16] mul) and the shifts into
/// one bias [16]: what is left on the activation is the matmul, the bias add, the relu and
/// the layout ops (fusion inlines the largest producer, the unfolded batch norm, not the bias
/// add). Folding rounds differently, so the file test compares within f32
/// tolerance (var = v*v + 1 keeps the scale moderate).
/// @per_row: a scale per row of a product (x @ w) * r * c, r [64x1], c [16], on the right
/// of the layout op (`-rhs`): only c may fold into the weights, never r.
"builtin.module"() ({
  "func.func"() <{function_type = (tensor<1x1024x72xf32>, tensor<16x8x3x3xf32>, tensor<16xf32>, tensor<16xf32>, tensor<16xf32>, tensor<16xf32>) -> tensor<1x16x32x32xf32>, sym_name = "conv_bn_relu"}> ({
  ^bb0(%cols: tensor<1x1024x72xf32>, %w: tensor<16x8x3x3xf32>, %gamma: tensor<16xf32>, %beta: tensor<16xf32>, %mean: tensor<16xf32>, %v: tensor<16xf32>):
    %0 = "dojo.reshape"(%w) : (tensor<16x8x3x3xf32>) -> tensor<1x16x72xf32>
    %1 = "dojo.transpose"(%0) {perm = array<i64: 0, 2, 1>} : (tensor<1x16x72xf32>) -> tensor<1x72x16xf32>
    %2 = "dojo.matmul"(%cols, %1) : (tensor<1x1024x72xf32>, tensor<1x72x16xf32>) -> tensor<1x1024x16xf32>
    %3 = "dojo.reshape"(%2) : (tensor<1x1024x16xf32>) -> tensor<1x32x32x1x16xf32>
    %4 = "dojo.transpose"(%3) {perm = array<i64: 3, 0, 4, 1, 2>} : (tensor<1x32x32x1x16xf32>) -> tensor<1x1x16x32x32xf32>
    %5 = "dojo.reshape"(%4) : (tensor<1x1x16x32x32xf32>) -> tensor<1x16x32x32xf32>
    %one = "dojo.constant"() {value = 1.0 : f64} : () -> tensor<f32>
    %vv = "dojo.mul"(%v, %v) : (tensor<16xf32>, tensor<16xf32>) -> tensor<16xf32>
    %var = "dojo.add"(%vv, %one) : (tensor<16xf32>, tensor<f32>) -> tensor<16xf32>
    %g = "dojo.reshape"(%gamma) : (tensor<16xf32>) -> tensor<16x1x1xf32>
    %b = "dojo.reshape"(%beta) : (tensor<16xf32>) -> tensor<16x1x1xf32>
    %m = "dojo.reshape"(%mean) : (tensor<16xf32>) -> tensor<16x1x1xf32>
    %s = "dojo.reshape"(%var) : (tensor<16xf32>) -> tensor<16x1x1xf32>
    %eps = "dojo.constant"() {value = 1.0e-5 : f64} : () -> tensor<f32>
    %6 = "dojo.add"(%s, %eps) : (tensor<16x1x1xf32>, tensor<f32>) -> tensor<16x1x1xf32>
    %7 = "dojo.rsqrt"(%6) : (tensor<16x1x1xf32>) -> tensor<16x1x1xf32>
    %8 = "dojo.sub"(%5, %m) : (tensor<1x16x32x32xf32>, tensor<16x1x1xf32>) -> tensor<1x16x32x32xf32>
    %9 = "dojo.mul"(%8, %7) : (tensor<1x16x32x32xf32>, tensor<16x1x1xf32>) -> tensor<1x16x32x32xf32>
    %10 = "dojo.mul"(%9, %g) : (tensor<1x16x32x32xf32>, tensor<16x1x1xf32>) -> tensor<1x16x32x32xf32>
    %11 = "dojo.add"(%10, %b) : (tensor<1x16x32x32xf32>, tensor<16x1x1xf32>) -> tensor<1x16x32x32xf32>
    %12 = "dojo.relu"(%11) : (tensor<1x16x32x32xf32>) -> tensor<1x16x32x32xf32>
    "func.return"(%12) : (tensor<1x16x32x32xf32>) -> ()
  }) : () -> ()
  "func.func"() <{function_type = (tensor<64x32xf32>, tensor<32x16xf32>, tensor<64x1xf32>, tensor<16xf32>) -> tensor<16x64xf32>, sym_name = "per_row"}> ({
  ^bb0(%x: tensor<64x32xf32>, %w: tensor<32x16xf32>, %r: tensor<64x1xf32>, %c: tensor<16xf32>):
    %0 = "dojo.matmul"(%x, %w) : (tensor<64x32xf32>, tensor<32x16xf32>) -> tensor<64x16xf32>
    %1 = "dojo.mul"(%0, %r) : (tensor<64x16xf32>, tensor<64x1xf32>) -> tensor<64x16xf32>
    %2 = "dojo.transpose"(%1) {perm = array<i64: 1, 0>} : (tensor<64x16xf32>) -> tensor<16x64xf32>
    %3 = "dojo.reshape"(%c) : (tensor<16xf32>) -> tensor<16x1xf32>
    %4 = "dojo.mul"(%3, %2) : (tensor<16x1xf32>, tensor<16x64xf32>) -> tensor<16x64xf32>
    "func.return"(%4) : (tensor<16x64xf32>) -> ()
  }) : () -> ()
}) : () -> ()
