// RUN: dojo-opt %s --pass-pipeline='egraph-optimize'
/// Constant folding (the analysis): splat constants combined by exact ops become one constant; exp is not folded.
"builtin.module"() ({
  "func.func"() <{function_type = (tensor<16x32xf32>) -> (tensor<16x32xf32>, tensor<4xf32>), sym_name = "f"}> ({
  ^bb0(%x: tensor<16x32xf32>):
    %a = "dojo.constant"() {value = 2.5 : f64} : () -> tensor<f32>
    %b = "dojo.constant"() {value = 0.1 : f64} : () -> tensor<32xf32>
    %0 = "dojo.mul"(%a, %b) : (tensor<f32>, tensor<32xf32>) -> tensor<32xf32>
    %1 = "dojo.neg"(%0) : (tensor<32xf32>) -> tensor<32xf32>
    %2 = "dojo.add"(%x, %1) : (tensor<16x32xf32>, tensor<32xf32>) -> tensor<16x32xf32>
    %c = "dojo.constant"() {value = 3.0 : f64} : () -> tensor<4xf32>
    %3 = "dojo.exp"(%c) : (tensor<4xf32>) -> tensor<4xf32>
    "func.return"(%2, %3) : (tensor<16x32xf32>, tensor<4xf32>) -> ()
  }) : () -> ()
}) : () -> ()
