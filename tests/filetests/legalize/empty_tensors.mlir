// RUN: dojo-opt %s --pass-pipeline=legalize-aten
/// Tensors with a zero-size dim are reported (they stay on the host), never lowered.
"builtin.module"() ({
  "func.func"() <{function_type = (tensor<0x4xf32>) -> (tensor<0x4xf32>), sym_name = "f"}> ({
  ^bb0(%x: tensor<0x4xf32>):
    %0 = "aten.exp.default"(%x) {fx.node = "exp"} : (tensor<0x4xf32>) -> tensor<0x4xf32>
    "func.return"(%0) : (tensor<0x4xf32>) -> ()
  }) : () -> ()
}) : () -> ()
