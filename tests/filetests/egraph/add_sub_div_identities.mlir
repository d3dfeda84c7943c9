// RUN: dojo-opt %s --pass-pipeline='egraph-optimize'
/// add-zero, sub-zero, div-one: x + 0, 0 + x, x - 0 and x / 1 are x.
"builtin.module"() ({
  "func.func"() <{function_type = (tensor<16x32xf32>) -> tensor<16x32xf32>, sym_name = "f"}> ({
  ^bb0(%x: tensor<16x32xf32>):
    %zero = "dojo.constant"() {value = 0.0 : f64} : () -> tensor<f32>
    %one = "dojo.constant"() {value = 1.0 : f64} : () -> tensor<1x32xf32>
    %0 = "dojo.add"(%x, %zero) : (tensor<16x32xf32>, tensor<f32>) -> tensor<16x32xf32>
    %1 = "dojo.add"(%zero, %0) : (tensor<f32>, tensor<16x32xf32>) -> tensor<16x32xf32>
    %2 = "dojo.sub"(%1, %zero) : (tensor<16x32xf32>, tensor<f32>) -> tensor<16x32xf32>
    %3 = "dojo.div"(%2, %one) : (tensor<16x32xf32>, tensor<1x32xf32>) -> tensor<16x32xf32>
    %4 = "dojo.exp"(%3) : (tensor<16x32xf32>) -> tensor<16x32xf32>
    "func.return"(%4) : (tensor<16x32xf32>) -> ()
  }) : () -> ()
}) : () -> ()
