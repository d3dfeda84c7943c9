// RUN: dojo-opt %s
/// Malformed text: an operand whose type differs from the op's signature.
"builtin.module"() ({
  "func.func"() <{function_type = (tensor<4xf32>) -> (tensor<4xf32>), sym_name = "f"}> ({
  ^bb0(%a: tensor<4xf32>):
    %0 = "dojo.relu"(%a) : (tensor<5xf32>) -> tensor<4xf32>
    "func.return"(%0) : (tensor<4xf32>) -> ()
  }) : () -> ()
}) : () -> ()
