// RUN: dojo-opt %s --pass-pipeline='egraph-optimize'
/// matmul-of-transposes: A^T B^T (batched) becomes (B A)^T: one transpose instead of two.
"builtin.module"() ({
  "func.func"() <{function_type = (tensor<4x32x16xf32>, tensor<4x64x32xf32>) -> tensor<4x16x64xf32>, sym_name = "f"}> ({
  ^bb0(%a: tensor<4x32x16xf32>, %b: tensor<4x64x32xf32>):
    %0 = "dojo.transpose"(%a) {perm = array<i64: 0, 2, 1>} : (tensor<4x32x16xf32>) -> tensor<4x16x32xf32>
    %1 = "dojo.transpose"(%b) {perm = array<i64: 0, 2, 1>} : (tensor<4x64x32xf32>) -> tensor<4x32x64xf32>
    %2 = "dojo.matmul"(%0, %1) : (tensor<4x16x32xf32>, tensor<4x32x64xf32>) -> tensor<4x16x64xf32>
    "func.return"(%2) : (tensor<4x16x64xf32>) -> ()
  }) : () -> ()
}) : () -> ()
