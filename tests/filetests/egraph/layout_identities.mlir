// RUN: dojo-opt %s --pass-pipeline='egraph-optimize'
/// transpose-identity, reshape-identity, broadcast-identity: no-op layout ops disappear.
"builtin.module"() ({
  "func.func"() <{function_type = (tensor<16x32xf32>) -> tensor<16x32xf32>, sym_name = "f"}> ({
  ^bb0(%x: tensor<16x32xf32>):
    %0 = "dojo.transpose"(%x) {perm = array<i64: 0, 1>} : (tensor<16x32xf32>) -> tensor<16x32xf32>
    %1 = "dojo.reshape"(%0) : (tensor<16x32xf32>) -> tensor<16x32xf32>
    %2 = "dojo.broadcast"(%1) : (tensor<16x32xf32>) -> tensor<16x32xf32>
    %3 = "dojo.sigmoid"(%2) : (tensor<16x32xf32>) -> tensor<16x32xf32>
    "func.return"(%3) : (tensor<16x32xf32>) -> ()
  }) : () -> ()
}) : () -> ()
