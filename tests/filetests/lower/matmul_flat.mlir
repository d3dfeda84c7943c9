// RUN: dojo-opt %s --pass-pipeline='lower-to-d1{mesh=d1:2x2},dce'
/// `[d..., k] @ [k, n]` (a convolution's columns by output position times small weights):
/// @f's columns stay where `tanh` put them (H and W over the 2x2 cores, `k` whole), the
/// weights are replicated, and the bias and relu run in the matmul's kernel: no reshard of
/// the columns, no reshape.
"builtin.module"() ({
  "func.func"() <{function_type = (tensor<1x16x16x2x4xf32>, tensor<4x16xf32>, tensor<1x1x1x1x16xf32>) -> tensor<1x16x16x2x16xf32>, sym_name = "f"}> ({
  ^bb0(%x: tensor<1x16x16x2x4xf32>, %w: tensor<4x16xf32>, %b: tensor<1x1x1x1x16xf32>):
    %c = "dojo.tanh"(%x) : (tensor<1x16x16x2x4xf32>) -> tensor<1x16x16x2x4xf32>
    %y = "dojo.matmul"(%c, %w, %b) {epilogue = "add(x0,x1);relu(t0)"} : (tensor<1x16x16x2x4xf32>, tensor<4x16xf32>, tensor<1x1x1x1x16xf32>) -> tensor<1x16x16x2x16xf32>
    "func.return"(%y) : (tensor<1x16x16x2x16xf32>) -> ()
  }) : () -> ()
}) : () -> ()
