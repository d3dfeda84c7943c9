// RUN: dojo-opt %s --pass-pipeline='egraph-optimize'
/// Hash-consing merges common subexpressions, including ops the language keeps opaque (dojo.reduce_sum, dojo.cmp); unknown non-dojo ops are carried through and never merged.
"builtin.module"() ({
  "func.func"() <{function_type = (tensor<16x32xf32>) -> (tensor<16x32xf32>, tensor<16x1xf32>, tensor<16x32xi1>, tensor<16x32xf32>), sym_name = "f"}> ({
  ^bb0(%x: tensor<16x32xf32>):
    %0 = "dojo.exp"(%x) : (tensor<16x32xf32>) -> tensor<16x32xf32>
    %1 = "dojo.exp"(%x) : (tensor<16x32xf32>) -> tensor<16x32xf32>
    %2 = "dojo.add"(%0, %1) : (tensor<16x32xf32>, tensor<16x32xf32>) -> tensor<16x32xf32>
    %3 = "dojo.reduce_sum"(%0) {dims = array<i64: 1>, keepdim = true} : (tensor<16x32xf32>) -> tensor<16x1xf32>
    %4 = "dojo.reduce_sum"(%1) {dims = array<i64: 1>, keepdim = true} : (tensor<16x32xf32>) -> tensor<16x1xf32>
    %5 = "dojo.add"(%3, %4) : (tensor<16x1xf32>, tensor<16x1xf32>) -> tensor<16x1xf32>
    %zero = "dojo.constant"() {value = 0.0 : f64} : () -> tensor<f32>
    %6 = "dojo.cmp"(%2, %zero) {predicate = "gt"} : (tensor<16x32xf32>, tensor<f32>) -> tensor<16x32xi1>
    %7 = "aten.relu.default"(%2) {fx.node = "relu"} : (tensor<16x32xf32>) -> tensor<16x32xf32>
    %8 = "aten.relu.default"(%2) {fx.node = "relu"} : (tensor<16x32xf32>) -> tensor<16x32xf32>
    %9 = "dojo.sub"(%7, %8) : (tensor<16x32xf32>, tensor<16x32xf32>) -> tensor<16x32xf32>
    "func.return"(%2, %5, %6, %9) : (tensor<16x32xf32>, tensor<16x1xf32>, tensor<16x32xi1>, tensor<16x32xf32>) -> ()
  }) : () -> ()
}) : () -> ()
