// RUN: dojo-opt %s --pass-pipeline='egraph-optimize'
/// neg-neg: -(-x) is x; a single negation stays.
"builtin.module"() ({
  "func.func"() <{function_type = (tensor<16x32xf32>) -> (tensor<16x32xf32>, tensor<16x32xf32>), sym_name = "f"}> ({
  ^bb0(%x: tensor<16x32xf32>):
    %0 = "dojo.neg"(%x) : (tensor<16x32xf32>) -> tensor<16x32xf32>
    %1 = "dojo.neg"(%0) : (tensor<16x32xf32>) -> tensor<16x32xf32>
    %2 = "dojo.tanh"(%1) : (tensor<16x32xf32>) -> tensor<16x32xf32>
    "func.return"(%2, %0) : (tensor<16x32xf32>, tensor<16x32xf32>) -> ()
  }) : () -> ()
}) : () -> ()
