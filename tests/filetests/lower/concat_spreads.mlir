// RUN: dojo-opt %s --pass-pipeline='legalize-aten,dce,lower-to-d1{mesh=d1},dce'
/// A concat many times the size of its operands (as the taps of a convolution's columns): its
/// operand's layout (4096 over 16 mesh columns) would give shards of 164 KB, so it takes the
/// default placement instead (a 16 x 16 block, 40 KB shards).
"builtin.module"() ({
  "func.func"() <{function_type = (tensor<4x4096xf32>) -> (tensor<160x4096xf32>), sym_name = "forward"}> ({
  ^bb0(%arg0: tensor<4x4096xf32>):
    %0 = "dojo.concat"(%arg0, %arg0, %arg0, %arg0, %arg0, %arg0, %arg0, %arg0, %arg0, %arg0, %arg0, %arg0, %arg0, %arg0, %arg0, %arg0, %arg0, %arg0, %arg0, %arg0, %arg0, %arg0, %arg0, %arg0, %arg0, %arg0, %arg0, %arg0, %arg0, %arg0, %arg0, %arg0, %arg0, %arg0, %arg0, %arg0, %arg0, %arg0, %arg0, %arg0) {dim = 0 : i64} : (tensor<4x4096xf32>, tensor<4x4096xf32>, tensor<4x4096xf32>, tensor<4x4096xf32>, tensor<4x4096xf32>, tensor<4x4096xf32>, tensor<4x4096xf32>, tensor<4x4096xf32>, tensor<4x4096xf32>, tensor<4x4096xf32>, tensor<4x4096xf32>, tensor<4x4096xf32>, tensor<4x4096xf32>, tensor<4x4096xf32>, tensor<4x4096xf32>, tensor<4x4096xf32>, tensor<4x4096xf32>, tensor<4x4096xf32>, tensor<4x4096xf32>, tensor<4x4096xf32>, tensor<4x4096xf32>, tensor<4x4096xf32>, tensor<4x4096xf32>, tensor<4x4096xf32>, tensor<4x4096xf32>, tensor<4x4096xf32>, tensor<4x4096xf32>, tensor<4x4096xf32>, tensor<4x4096xf32>, tensor<4x4096xf32>, tensor<4x4096xf32>, tensor<4x4096xf32>, tensor<4x4096xf32>, tensor<4x4096xf32>, tensor<4x4096xf32>, tensor<4x4096xf32>, tensor<4x4096xf32>, tensor<4x4096xf32>, tensor<4x4096xf32>, tensor<4x4096xf32>) -> tensor<160x4096xf32>
    "func.return"(%0) : (tensor<160x4096xf32>) -> ()
  }) : () -> ()
}) : () -> ()
