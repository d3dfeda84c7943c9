// RUN: dojo-opt %s --pass-pipeline='lower-to-d1{mesh=d1:4x4},dce'
/// A concat whose only dim long enough for shards of at least 8 elements a side is its 64
/// channels ([8, 64, 9, 7, 7], like a convolution's taps at batch 8): the usual placement would
/// put it on 4 cores at 226 KB each (at resnet50's sizes, 882 KiB on 16 cores: more than a
/// core's SRAM). Shards that large allow any edge: the 7 x 7 spatial dims split over the 4 x 4
/// block, 74 KB each.
"builtin.module"() ({
  "func.func"() <{function_type = (tensor<8x64x1x7x7xf32>, tensor<8x64x1x7x7xf32>, tensor<8x64x1x7x7xf32>, tensor<8x64x1x7x7xf32>, tensor<8x64x1x7x7xf32>, tensor<8x64x1x7x7xf32>, tensor<8x64x1x7x7xf32>, tensor<8x64x1x7x7xf32>, tensor<8x64x1x7x7xf32>) -> (tensor<8x64x9x7x7xf32>), sym_name = "f"}> ({
  ^bb0(%a0: tensor<8x64x1x7x7xf32>, %a1: tensor<8x64x1x7x7xf32>, %a2: tensor<8x64x1x7x7xf32>, %a3: tensor<8x64x1x7x7xf32>, %a4: tensor<8x64x1x7x7xf32>, %a5: tensor<8x64x1x7x7xf32>, %a6: tensor<8x64x1x7x7xf32>, %a7: tensor<8x64x1x7x7xf32>, %a8: tensor<8x64x1x7x7xf32>):
    %0 = "dojo.concat"(%a0, %a1, %a2, %a3, %a4, %a5, %a6, %a7, %a8) {dim = 2 : i64} : (tensor<8x64x1x7x7xf32>, tensor<8x64x1x7x7xf32>, tensor<8x64x1x7x7xf32>, tensor<8x64x1x7x7xf32>, tensor<8x64x1x7x7xf32>, tensor<8x64x1x7x7xf32>, tensor<8x64x1x7x7xf32>, tensor<8x64x1x7x7xf32>, tensor<8x64x1x7x7xf32>) -> tensor<8x64x9x7x7xf32>
    "func.return"(%0) : (tensor<8x64x9x7x7xf32>) -> ()
  }) : () -> ()
}) : () -> ()
