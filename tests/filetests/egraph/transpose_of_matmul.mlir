// RUN: dojo-opt %s --pass-pipeline='egraph-optimize'
/// transpose-of-matmul: (A B)^T with A given transposed becomes B^T A with one transpose fewer.
"builtin.module"() ({
  "func.func"() <{function_type = (tensor<64x32xf32>, tensor<64x48xf32>) -> tensor<48x32xf32>, sym_name = "f"}> ({
  ^bb0(%a: tensor<64x32xf32>, %b: tensor<64x48xf32>):
    %0 = "dojo.transpose"(%a) {perm = array<i64: 1, 0>} : (tensor<64x32xf32>) -> tensor<32x64xf32>
    %1 = "dojo.matmul"(%0, %b) : (tensor<32x64xf32>, tensor<64x48xf32>) -> tensor<32x48xf32>
    %2 = "dojo.transpose"(%1) {perm = array<i64: 1, 0>} : (tensor<32x48xf32>) -> tensor<48x32xf32>
    "func.return"(%2) : (tensor<48x32xf32>) -> ()
  }) : () -> ()
}) : () -> ()
