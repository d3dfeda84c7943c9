// RUN: dojo-opt %s
/// reduce_max and erf print back; as graph-level IR the MLIR bridge emits them too
/// (linalg.reduce with maximumf, math.erf).
"builtin.module"() ({
  "func.func"() <{function_type = (tensor<4x8xf32>) -> (tensor<4x1xf32>, tensor<4x8xf32>), sym_name = "f"}> ({
  ^bb0(%x: tensor<4x8xf32>):
    %0 = "dojo.reduce_max"(%x) {dims = array<i64: 1>, keepdim = true} : (tensor<4x8xf32>) -> tensor<4x1xf32>
    %1 = "dojo.erf"(%x) : (tensor<4x8xf32>) -> tensor<4x8xf32>
    "func.return"(%0, %1) : (tensor<4x1xf32>, tensor<4x8xf32>) -> ()
  }) : () -> ()
}) : () -> ()
