// RUN: dojo-opt %s --pass-pipeline='split-batch{mesh=tile parts=2},legalize-aten,dce,lower-to-d1{mesh=tile},dce'
/// Two parts whose matmul spreads over its area (1024 x 1024 x 256 per part, 0.5 GFLOP: above
/// `PART_MIN_MATMUL_S`): on blocks of 2 x 5 chips (34 x 95 cores, one chip row idle) its
/// 1024 x 256 result would take 34 x 32 cores; on half of the usable grid each, 85 x 47
/// cores across the chips' edges, it takes 85 x 32. So the parts get those rectangles (part
/// 1's from usable column 47), not blocks of chips. The Program matches the reference on the
/// simulator.
"builtin.module"() ({
  "func.func"() <{function_type = (tensor<2x1024xi64>, tensor<64x1024xf32>, tensor<256x1024xf32>) -> (tensor<2x1024x256xf32>), sym_name = "forward"}> ({
  ^bb0(%ids: tensor<2x1024xi64>, %table: tensor<64x1024xf32>, %w: tensor<256x1024xf32>):
    %0 = "aten.embedding.default"(%table, %ids) : (tensor<64x1024xf32>, tensor<2x1024xi64>) -> tensor<2x1024x1024xf32>
    %1 = "aten.view.default"(%0) {size = array<i64: 2048, 1024>} : (tensor<2x1024x1024xf32>) -> tensor<2048x1024xf32>
    %2 = "aten.t.default"(%w) : (tensor<256x1024xf32>) -> tensor<1024x256xf32>
    %3 = "aten.mm.default"(%1, %2) : (tensor<2048x1024xf32>, tensor<1024x256xf32>) -> tensor<2048x256xf32>
    %4 = "aten.view.default"(%3) {size = array<i64: 2, 1024, 256>} : (tensor<2048x256xf32>) -> tensor<2x1024x256xf32>
    "func.return"(%4) : (tensor<2x1024x256xf32>) -> ()
  }) : () -> ()
}) : () -> ()
