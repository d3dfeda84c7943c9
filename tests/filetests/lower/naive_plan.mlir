// RUN: dojo-opt %s --pass-pipeline='lower-to-d1{mesh=d1:4x4 plan=naive}'
/// The naive baseline plan (issue 5): every result is row-split over all 16 cores of the 4x4
/// block (split 2: both mesh axes, row-major), a matmul is row-split `a` times `b`
/// replicated on every core (no SUMMA block, no row-block stores), and the bias is resharded
/// to the add's row split (replicated, as a broadcast operand).
"builtin.module"() ({
  "func.func"() <{function_type = (tensor<64x32xf32>, tensor<32x48xf32>, tensor<48xf32>) -> (tensor<64x48xf32>), sym_name = "f"}> ({
  ^bb0(%a: tensor<64x32xf32>, %b: tensor<32x48xf32>, %bias: tensor<48xf32>):
    %0 = "dojo.matmul"(%a, %b) : (tensor<64x32xf32>, tensor<32x48xf32>) -> tensor<64x48xf32>
    %1 = "dojo.add"(%0, %bias) : (tensor<64x48xf32>, tensor<48xf32>) -> tensor<64x48xf32>
    "func.return"(%1) : (tensor<64x48xf32>) -> ()
  }) : () -> ()
}) : () -> ()
