// RUN: dojo-opt %s --pass-pipeline='lower-to-d1{mesh=d1}'
/// Reshapes that merge or split dims stay spread over cores: [2,64,512] -> [128,512] carries
/// the split of the last dim, [2,64,128] -> [2,64,4,32] carries the split of dim 1.
"builtin.module"() ({
  "func.func"() <{function_type = (tensor<2x64x512xf32>, tensor<2x64x128xf32>) -> (tensor<128x512xf32>, tensor<2x64x4x32xf32>), sym_name = "f"}> ({
  ^bb0(%a: tensor<2x64x512xf32>, %b: tensor<2x64x128xf32>):
    %0 = "dojo.reshape"(%a) : (tensor<2x64x512xf32>) -> tensor<128x512xf32>
    %1 = "dojo.reshape"(%b) : (tensor<2x64x128xf32>) -> tensor<2x64x4x32xf32>
    "func.return"(%0, %1) : (tensor<128x512xf32>, tensor<2x64x4x32xf32>) -> ()
  }) : () -> ()
}) : () -> ()
