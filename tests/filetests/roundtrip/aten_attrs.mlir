// RUN: dojo-opt %s
/// Imported aten ops keep multi-result groups, CFloat element types and nested attributes.
"builtin.module"() ({
  "func.func"() <{function_type = (tensor<2x3xf32>) -> (tensor<2xf32>, tensor<2xi64>, tensor<6x!dojo.cf8_143<7>>), sym_name = "g"}> ({
  ^bb0(%arg0: tensor<2x3xf32>):
    %0:2 = "aten.max.dim"(%arg0) {dim = 1 : i64, fx.node = "max", keepdim = false, note = "say \"hi\"", nested = {xs = [1 : i64, 2.5 : f64, tensor<2xf32>]}} : (tensor<2x3xf32>) -> (tensor<2xf32>, tensor<2xi64>)
    %1 = "aten.fake.default"(%0#0) {fill = 0x7FF8000000000000 : f64, sizes = array<i64: 6>} : (tensor<2xf32>) -> tensor<6x!dojo.cf8_143<7>>
    "func.return"(%0#0, %0#1, %1) : (tensor<2xf32>, tensor<2xi64>, tensor<6x!dojo.cf8_143<7>>) -> ()
  }) : () -> ()
}) {dojo.note = "module attributes survive"} : () -> ()
