// RUN: dojo-opt %s --pass-pipeline='split-batch{mesh=tile parts=2},legalize-aten,dce,lower-to-d1{mesh=tile},dce'
/// Two parts on a tile's 5 x 5 chips get a block of 2 x 5 chips each
/// (`dojo.part_chips`; part 1's from usable row 34). A part's 16 MB of embeddings is too large
/// for one 16 x 16 block, so it spreads over its block's chips (a layout across chip
/// boundaries) and never onto the other part's. The Program matches the reference on the
/// simulator.
"builtin.module"() ({
  "func.func"() <{function_type = (tensor<2x4096xi64>, tensor<64x1024xf32>, tensor<1024xf32>) -> (tensor<2x4096x1024xf32>), sym_name = "forward"}> ({
  ^bb0(%ids: tensor<2x4096xi64>, %table: tensor<64x1024xf32>, %b: tensor<1024xf32>):
    %0 = "aten.embedding.default"(%table, %ids) : (tensor<64x1024xf32>, tensor<2x4096xi64>) -> tensor<2x4096x1024xf32>
    %1 = "aten.add.Tensor"(%0, %b) {alpha = 1 : i64} : (tensor<2x4096x1024xf32>, tensor<1024xf32>) -> tensor<2x4096x1024xf32>
    %2 = "aten.relu.default"(%1) : (tensor<2x4096x1024xf32>) -> tensor<2x4096x1024xf32>
    "func.return"(%2) : (tensor<2x4096x1024xf32>) -> ()
  }) : () -> ()
}) : () -> ()
