// RUN: dojo-opt %s --pass-pipeline=legalize-aten
/// Every op the compiler cannot run is reported in one error with its node, shapes and dtypes.
"builtin.module"() ({
  "func.func"() <{function_type = (tensor<4x8xf32>, tensor<4x8xf16>) -> (tensor<4x8xf32>, tensor<4x8xf16>), sym_name = "f"}> ({
  ^bb0(%x: tensor<4x8xf32>, %h: tensor<4x8xf16>):
    %0 = "aten.cumsum.default"(%x) {dim = 1 : i64, fx.node = "cumsum"} : (tensor<4x8xf32>) -> tensor<4x8xf32>
    %1 = "aten.relu.default"(%0) {fx.node = "relu"} : (tensor<4x8xf32>) -> tensor<4x8xf32>
    %2 = "aten.neg.default"(%h) {fx.node = "neg_half"} : (tensor<4x8xf16>) -> tensor<4x8xf16>
    "func.return"(%1, %2) : (tensor<4x8xf32>, tensor<4x8xf16>) -> ()
  }) : () -> ()
}) : () -> ()
