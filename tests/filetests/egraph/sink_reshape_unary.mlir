// RUN: dojo-opt %s --pass-pipeline='egraph-optimize'
/// sink-reshape-<unary>: a reshape moves below an elementwise op to meet and merge with another reshape.
"builtin.module"() ({
  "func.func"() <{function_type = (tensor<16x32xf32>) -> tensor<16x32xf32>, sym_name = "f"}> ({
  ^bb0(%x: tensor<16x32xf32>):
    %0 = "dojo.reshape"(%x) : (tensor<16x32xf32>) -> tensor<4x4x32xf32>
    %1 = "dojo.tanh"(%0) : (tensor<4x4x32xf32>) -> tensor<4x4x32xf32>
    %2 = "dojo.reshape"(%1) : (tensor<4x4x32xf32>) -> tensor<16x32xf32>
    "func.return"(%2) : (tensor<16x32xf32>) -> ()
  }) : () -> ()
}) : () -> ()
