// RUN: dojo-opt %s
/// Malformed text: a use of an undefined value gives line:column, no crash.
"builtin.module"() ({
  "func.func"() <{function_type = (tensor<4xf32>) -> (tensor<4xf32>), sym_name = "f"}> ({
  ^bb0(%a: tensor<4xf32>):
    %0 = "dojo.relu"(%b) : (tensor<4xf32>) -> tensor<4xf32>
    "func.return"(%0) : (tensor<4xf32>) -> ()
  }) : () -> ()
}) : () -> ()
