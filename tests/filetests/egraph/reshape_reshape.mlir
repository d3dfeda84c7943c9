// RUN: dojo-opt %s --pass-pipeline='egraph-optimize'
/// reshape-reshape: a chain of reshapes is one reshape (and none when it returns to the input shape).
"builtin.module"() ({
  "func.func"() <{function_type = (tensor<16x32xf32>) -> (tensor<4x128xf32>, tensor<16x32xf32>), sym_name = "f"}> ({
  ^bb0(%x: tensor<16x32xf32>):
    %0 = "dojo.reshape"(%x) : (tensor<16x32xf32>) -> tensor<512xf32>
    %1 = "dojo.reshape"(%0) : (tensor<512xf32>) -> tensor<8x2x32xf32>
    %2 = "dojo.reshape"(%1) : (tensor<8x2x32xf32>) -> tensor<4x128xf32>
    %3 = "dojo.reshape"(%2) : (tensor<4x128xf32>) -> tensor<16x32xf32>
    %4 = "dojo.relu"(%3) : (tensor<16x32xf32>) -> tensor<16x32xf32>
    "func.return"(%2, %4) : (tensor<4x128xf32>, tensor<16x32xf32>) -> ()
  }) : () -> ()
}) : () -> ()
