// RUN: dojo-opt %s --pass-pipeline='egraph-optimize'
/// mul-one: x * 1 and 1 * x are x (a broadcasting 1 that would change the shape stays).
"builtin.module"() ({
  "func.func"() <{function_type = (tensor<16x32xf32>, tensor<32xf32>) -> (tensor<16x32xf32>, tensor<16x32xf32>, tensor<2x16x32xf32>), sym_name = "f"}> ({
  ^bb0(%x: tensor<16x32xf32>, %y: tensor<32xf32>):
    %one = "dojo.constant"() {value = 1.0 : f64} : () -> tensor<f32>
    %0 = "dojo.mul"(%x, %one) : (tensor<16x32xf32>, tensor<f32>) -> tensor<16x32xf32>
    %1 = "dojo.mul"(%one, %0) : (tensor<f32>, tensor<16x32xf32>) -> tensor<16x32xf32>
    %2 = "dojo.add"(%1, %y) : (tensor<16x32xf32>, tensor<32xf32>) -> tensor<16x32xf32>
    %ones = "dojo.constant"() {value = 1.0 : f64} : () -> tensor<2x16x32xf32>
    %3 = "dojo.mul"(%x, %ones) : (tensor<16x32xf32>, tensor<2x16x32xf32>) -> tensor<2x16x32xf32>
    "func.return"(%1, %2, %3) : (tensor<16x32xf32>, tensor<16x32xf32>, tensor<2x16x32xf32>) -> ()
  }) : () -> ()
}) : () -> ()
