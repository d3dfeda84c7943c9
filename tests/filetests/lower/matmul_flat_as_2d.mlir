// RUN: dojo-opt %s --pass-pipeline='lower-to-d1{mesh=d1:2x2},dce'
/// `[d..., k] @ [k, n]` whose weights (1 MB, computed on the mesh) do not fit beside the rows
/// in one step: the rows become one dim, `[1, 64, 512] @ [1, 512, 512]`, planned like any
/// matmul (K steps; the weights counted at their own rank-2 layout), the epilogue's operand
/// reshaped with it, the result reshaped back.
"builtin.module"() ({
  "func.func"() <{function_type = (tensor<1x4x4x4x512xf32>, tensor<512x512xf32>, tensor<1x4x4x4x512xf32>) -> tensor<1x4x4x4x512xf32>, sym_name = "f"}> ({
  ^bb0(%x: tensor<1x4x4x4x512xf32>, %w: tensor<512x512xf32>, %r: tensor<1x4x4x4x512xf32>):
    %c = "dojo.tanh"(%x) : (tensor<1x4x4x4x512xf32>) -> tensor<1x4x4x4x512xf32>
    %wm = "dojo.tanh"(%w) : (tensor<512x512xf32>) -> tensor<512x512xf32>
    %y = "dojo.matmul"(%c, %wm, %r) {epilogue = "add(x0,x1)"} : (tensor<1x4x4x4x512xf32>, tensor<512x512xf32>, tensor<1x4x4x4x512xf32>) -> tensor<1x4x4x4x512xf32>
    "func.return"(%y) : (tensor<1x4x4x4x512xf32>) -> ()
  }) : () -> ()
}) : () -> ()
