// RUN: dojo-opt %s
/// The verifier rejects a matmul whose contraction dims differ, pointing at the op's line.
"builtin.module"() ({
  "func.func"() <{function_type = (tensor<4x8xf32>, tensor<4x8xf32>) -> (tensor<4x8xf32>), sym_name = "f"}> ({
  ^bb0(%a: tensor<4x8xf32>, %b: tensor<4x8xf32>):
    %0 = "dojo.matmul"(%a, %b) : (tensor<4x8xf32>, tensor<4x8xf32>) -> tensor<4x8xf32>
    "func.return"(%0) : (tensor<4x8xf32>) -> ()
  }) : () -> ()
}) : () -> ()
