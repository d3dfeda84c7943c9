// RUN: dojo-opt %s --pass-pipeline='split-batch{mesh=tile parts=2},dce'
/// A backward's weight gradient from a saved activation (`%saved`, the batch's 4 x 3 rows of
/// a sequence, not found batched since its dim 0 is not the batch): the permute of the whole
/// argument is sliced per part for the matmul, and each part slices the argument's rows
/// first and permutes its own slice (so a part loads only its rows, not the whole saved
/// activation). The partial gradients are summed over the parts; the output matches the
/// input on the interpreter.
"builtin.module"() ({
  "func.func"() <{function_type = (tensor<4x3xi64>, tensor<10x5xf32>, tensor<12x7xf32>) -> (tensor<7x5xf32>), sym_name = "backward"}> ({
  ^bb0(%ids: tensor<4x3xi64>, %table: tensor<10x5xf32>, %saved: tensor<12x7xf32>):
    %0 = "aten.embedding.default"(%table, %ids) : (tensor<10x5xf32>, tensor<4x3xi64>) -> tensor<4x3x5xf32>
    %1 = "aten.view.default"(%0) {size = array<i64: 12, 5>} : (tensor<4x3x5xf32>) -> tensor<12x5xf32>
    %2 = "aten.permute.default"(%saved) {dims = array<i64: 1, 0>} : (tensor<12x7xf32>) -> tensor<7x12xf32>
    %3 = "aten.mm.default"(%2, %1) : (tensor<7x12xf32>, tensor<12x5xf32>) -> tensor<7x5xf32>
    "func.return"(%3) : (tensor<7x5xf32>) -> ()
  }) : () -> ()
}) : () -> ()
