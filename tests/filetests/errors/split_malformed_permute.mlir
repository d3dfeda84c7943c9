// RUN: dojo-opt %s --pass-pipeline='split-batch{mesh=tile parts=2},legalize-aten'
/// A permute whose dims are not a permutation (dim 5 of a rank-2 tensor), on a saved
/// activation split-batch slices per part: split-batch leaves it as it is and legalization
/// names the op and the bad dim (before, split-batch indexed out of range and panicked).
"builtin.module"() ({
  "func.func"() <{function_type = (tensor<4x3xi64>, tensor<10x5xf32>, tensor<12x7xf32>) -> (tensor<7x5xf32>), sym_name = "backward"}> ({
  ^bb0(%ids: tensor<4x3xi64>, %table: tensor<10x5xf32>, %saved: tensor<12x7xf32>):
    %0 = "aten.embedding.default"(%table, %ids) : (tensor<10x5xf32>, tensor<4x3xi64>) -> tensor<4x3x5xf32>
    %1 = "aten.view.default"(%0) {size = array<i64: 12, 5>} : (tensor<4x3x5xf32>) -> tensor<12x5xf32>
    %2 = "aten.permute.default"(%saved) {dims = array<i64: 1, 5>} : (tensor<12x7xf32>) -> tensor<7x12xf32>
    %3 = "aten.mm.default"(%2, %1) : (tensor<7x12xf32>, tensor<12x5xf32>) -> tensor<7x5xf32>
    "func.return"(%3) : (tensor<7x5xf32>) -> ()
  }) : () -> ()
}) : () -> ()
