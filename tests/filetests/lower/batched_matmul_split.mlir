// RUN: dojo-opt %s --pass-pipeline='lower-to-d1{mesh=d1:4x4},dce'
/// A batched matmul (attention's probabilities @ values: 12 heads, 64 x 64 @ 64 x 16): its
/// 16 result columns give the rows x columns layout 2 mesh columns (8 cores, every core
/// multiplying all 12 heads); the batch over mesh rows (4 divides 12: 3 heads a row) and the
/// 64 result rows over columns give 16 cores, each multiplying its 3 heads. `a` and `b` are
/// split by batch like the result; the result runs and matches the reference.
"builtin.module"() ({
  "func.func"() <{function_type = (tensor<12x64x64xf32>, tensor<12x64x16xf32>) -> (tensor<12x64x16xf32>), sym_name = "f"}> ({
  ^bb0(%p: tensor<12x64x64xf32>, %v: tensor<12x64x16xf32>):
    %0 = "dojo.matmul"(%p, %v) : (tensor<12x64x64xf32>, tensor<12x64x16xf32>) -> tensor<12x64x16xf32>
    "func.return"(%0) : (tensor<12x64x16xf32>) -> ()
  }) : () -> ()
}) : () -> ()
