// RUN: dojo-opt %s --pass-pipeline='lower-to-d1{mesh=core}'
/// A matmul whose operands and result cannot fit one core's SRAM is a clear capacity error, not
/// a crash. (Its result feeds another op, so it cannot be computed and stored in row blocks
/// either; see lower/matmul_streams_b for the one that can.)
"builtin.module"() ({
  "func.func"() <{function_type = (tensor<512x512xf32>, tensor<512x512xf32>) -> (tensor<512x512xf32>), sym_name = "f"}> ({
  ^bb0(%a: tensor<512x512xf32>, %b: tensor<512x512xf32>):
    %0 = "dojo.matmul"(%a, %b) : (tensor<512x512xf32>, tensor<512x512xf32>) -> tensor<512x512xf32>
    %1 = "dojo.relu"(%0) : (tensor<512x512xf32>) -> tensor<512x512xf32>
    "func.return"(%1) : (tensor<512x512xf32>) -> ()
  }) : () -> ()
}) : () -> ()
