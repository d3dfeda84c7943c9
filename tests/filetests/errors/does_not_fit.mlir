// RUN: dojo-opt %s --pass-pipeline='lower-to-d1{mesh=core}'
/// A matmul whose operands cannot fit one core's SRAM is a clear capacity error, not a crash.
"builtin.module"() ({
  "func.func"() <{function_type = (tensor<512x512xf32>, tensor<512x512xf32>) -> (tensor<512x512xf32>), sym_name = "f"}> ({
  ^bb0(%a: tensor<512x512xf32>, %b: tensor<512x512xf32>):
    %0 = "dojo.matmul"(%a, %b) : (tensor<512x512xf32>, tensor<512x512xf32>) -> tensor<512x512xf32>
    "func.return"(%0) : (tensor<512x512xf32>) -> ()
  }) : () -> ()
}) : () -> ()
