// RUN: dojo-opt %s --pass-pipeline='egraph-optimize{epilogues=true}'
/// fuse-epilogue: elementwise ops over a matmul's product run in the matmul's kernel
/// (`dojo.matmul {epilogue}`, `x0` the product): a linear layer's bias add and gelu-like
/// tanh (the residual add after them, a full-size operand, stays a kernel of its own); a
/// batched matmul's per-column scale, shift and relu (a convolution with a folded batch
/// norm). `%p`, also returned, stays a plain matmul: fusing its consumer would compute the
/// product twice.
"builtin.module"() ({
  "func.func"() <{function_type = (tensor<64x256xf32>, tensor<256x128xf32>, tensor<128xf32>, tensor<64x128xf32>, tensor<2x64x32xf32>, tensor<2x32x48xf32>, tensor<1x1x48xf32>, tensor<48xf32>, tensor<256x128xf32>) -> (tensor<64x128xf32>, tensor<2x64x48xf32>, tensor<64x128xf32>, tensor<64x128xf32>), sym_name = "f"}> ({
  ^bb0(%x: tensor<64x256xf32>, %w: tensor<256x128xf32>, %b: tensor<128xf32>, %r: tensor<64x128xf32>, %c: tensor<2x64x32xf32>, %k: tensor<2x32x48xf32>, %s: tensor<1x1x48xf32>, %t: tensor<48xf32>, %v: tensor<256x128xf32>):
    %z = "dojo.constant"() {value = 0.000000e+00 : f64} : () -> tensor<f32>
    %0 = "dojo.matmul"(%x, %w) : (tensor<64x256xf32>, tensor<256x128xf32>) -> tensor<64x128xf32>
    %1 = "dojo.add"(%0, %b) : (tensor<64x128xf32>, tensor<128xf32>) -> tensor<64x128xf32>
    %2 = "dojo.tanh"(%1) : (tensor<64x128xf32>) -> tensor<64x128xf32>
    %3 = "dojo.add"(%2, %r) : (tensor<64x128xf32>, tensor<64x128xf32>) -> tensor<64x128xf32>
    %4 = "dojo.matmul"(%c, %k) : (tensor<2x64x32xf32>, tensor<2x32x48xf32>) -> tensor<2x64x48xf32>
    %5 = "dojo.mul"(%4, %s) : (tensor<2x64x48xf32>, tensor<1x1x48xf32>) -> tensor<2x64x48xf32>
    %6 = "dojo.add"(%5, %t) : (tensor<2x64x48xf32>, tensor<48xf32>) -> tensor<2x64x48xf32>
    %7 = "dojo.maximum"(%6, %z) : (tensor<2x64x48xf32>, tensor<f32>) -> tensor<2x64x48xf32>
    %p = "dojo.matmul"(%x, %v) : (tensor<64x256xf32>, tensor<256x128xf32>) -> tensor<64x128xf32>
    %8 = "dojo.sigmoid"(%p) : (tensor<64x128xf32>) -> tensor<64x128xf32>
    "func.return"(%3, %7, %8, %p) : (tensor<64x128xf32>, tensor<2x64x48xf32>, tensor<64x128xf32>, tensor<64x128xf32>) -> ()
  }) : () -> ()
}) : () -> ()
