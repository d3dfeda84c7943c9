// RUN: dojo-opt %s --pass-pipeline='split-batch{mesh=tile parts=2},legalize-aten,dce,lower-to-d1{mesh=tile},dce'
/// The case of `large_table`, lowered for a tile: the lookup and the logits' matmul run once
/// on the whole grid, the parts' additions each on its block of 2 x 5 chips (part 1's from usable row 34).
/// The Program matches the reference on the simulator.
"builtin.module"() ({
  "func.func"() <{function_type = (tensor<4x3xi64>, tensor<20000x1024xf32>, tensor<1024xf32>) -> (tensor<4x3x20000xf32>), sym_name = "forward"}> ({
  ^bb0(%ids: tensor<4x3xi64>, %table: tensor<20000x1024xf32>, %b: tensor<1024xf32>):
    %0 = "aten.embedding.default"(%table, %ids) : (tensor<20000x1024xf32>, tensor<4x3xi64>) -> tensor<4x3x1024xf32>
    %1 = "aten.add.Tensor"(%0, %b) {alpha = 1 : i64} : (tensor<4x3x1024xf32>, tensor<1024xf32>) -> tensor<4x3x1024xf32>
    %2 = "aten.view.default"(%1) {size = array<i64: 12, 1024>} : (tensor<4x3x1024xf32>) -> tensor<12x1024xf32>
    %3 = "aten.t.default"(%table) : (tensor<20000x1024xf32>) -> tensor<1024x20000xf32>
    %4 = "aten.mm.default"(%2, %3) : (tensor<12x1024xf32>, tensor<1024x20000xf32>) -> tensor<12x20000xf32>
    %5 = "aten.view.default"(%4) {size = array<i64: 4, 3, 20000>} : (tensor<12x20000xf32>) -> tensor<4x3x20000xf32>
    "func.return"(%5) : (tensor<4x3x20000xf32>) -> ()
  }) : () -> ()
}) : () -> ()
