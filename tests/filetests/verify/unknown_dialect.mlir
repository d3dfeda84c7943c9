// RUN: dojo-opt %s
/// Ops outside aten/dojo/d1 and unknown dojo ops are verifier errors.
"builtin.module"() ({
  "func.func"() <{function_type = (tensor<4xf32>) -> (tensor<4xf32>), sym_name = "f"}> ({
  ^bb0(%a: tensor<4xf32>):
    %0 = "arith.negf"(%a) : (tensor<4xf32>) -> tensor<4xf32>
    %1 = "dojo.frobnicate"(%0) : (tensor<4xf32>) -> tensor<4xf32>
    "func.return"(%1) : (tensor<4xf32>) -> ()
  }) : () -> ()
}) : () -> ()
