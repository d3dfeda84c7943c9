// RUN: dojo-opt %s --pass-pipeline='lower-to-d1{mesh=d1}'
/// A GEMM whose result only goes to the host is computed in row blocks (4 x 128 rows), each its
/// own SUMMA over K: the first block loads b's panel, the others reuse it, and
/// `d1.store {dim = 0}` takes the blocks, each stored while the next one computes.
"builtin.module"() ({
  "func.func"() <{function_type = (tensor<512x512xf32>, tensor<512x512xf32>) -> (tensor<512x512xf32>), sym_name = "f"}> ({
  ^bb0(%a: tensor<512x512xf32>, %b: tensor<512x512xf32>):
    %0 = "dojo.matmul"(%a, %b) : (tensor<512x512xf32>, tensor<512x512xf32>) -> tensor<512x512xf32>
    "func.return"(%0) : (tensor<512x512xf32>) -> ()
  }) : () -> ()
}) : () -> ()
