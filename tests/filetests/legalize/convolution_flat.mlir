// RUN: dojo-opt %s --pass-pipeline='legalize-aten,dce,lower-to-d1{mesh=d1},dce'
/// One group and small weights: the columns stay `[1, O..., N, Cg*T]` and multiply the
/// `[K, OC]` weight (`[d..., k] @ [k, n]`). Here the columns come from the host and move
/// anyway, so lowering takes the rows as one dim (`[1, M, K] @ [1, K, OC]`). With one output
/// channel the result is split over one mesh column, and the weight's panel must still
/// arrive in the matmul's layout (it came as a one-core layout once: OpInfo's conv3d
/// samples, a 1x1x1 and a 4x4x4 kernel with stride 2).
"builtin.module"() ({
  "func.func"() <{function_type = (tensor<1x1x4x4x4xf32>, tensor<1x1x1x1x1xf32>, tensor<1xf32>, tensor<1x1x4x4x4xf32>) -> (tensor<1x1x4x4x4xf32>, tensor<1x1x1x1x1xf32>), sym_name = "f"}> ({
  ^bb0(%x: tensor<1x1x4x4x4xf32>, %w: tensor<1x1x1x1x1xf32>, %b: tensor<1xf32>, %w4: tensor<1x1x4x4x4xf32>):
    %0 = "aten.convolution.default"(%x, %w, %b) {dilation = array<i64: 1, 1, 1>, fx.node = "convolution", groups = 1 : i64, output_padding = array<i64: 0, 0, 0>, padding = array<i64: 0, 0, 0>, stride = array<i64: 1, 1, 1>, transposed = false} : (tensor<1x1x4x4x4xf32>, tensor<1x1x1x1x1xf32>, tensor<1xf32>) -> tensor<1x1x4x4x4xf32>
    %1 = "aten.convolution.default"(%x, %w4, %b) {dilation = array<i64: 1, 1, 1>, fx.node = "convolution_1", groups = 1 : i64, output_padding = array<i64: 0, 0, 0>, padding = array<i64: 0, 0, 0>, stride = array<i64: 2, 2, 2>, transposed = false} : (tensor<1x1x4x4x4xf32>, tensor<1x1x4x4x4xf32>, tensor<1xf32>) -> tensor<1x1x1x1x1xf32>
    "func.return"(%0, %1) : (tensor<1x1x4x4x4xf32>, tensor<1x1x1x1x1xf32>) -> ()
  }) : () -> ()
}) : () -> ()
