// RUN: dojo-opt %s --pass-pipeline='lower-to-d1{mesh=d1:2x2},dce'
/// A long contraction against a narrow `b` (as resnet's stem: 100352 x 147 @ 147 x 64) with
/// `a` already on the mesh: split rows x columns, each core would hold 512 of the 1024 rows
/// and K would run in 10 steps of 51-52 columns beside `a`'s 512 KB shard. Split over all 4
/// cores by rows instead (`b` whole on each), a core holds 256 rows and K runs in 6 steps:
/// fewer, longer kernels, and each panel of `a` goes to one core instead of two.
"builtin.module"() ({
  "func.func"() <{function_type = (tensor<1024x512xf32>, tensor<512x64xf32>) -> (tensor<1024x64xf32>), sym_name = "f"}> ({
  ^bb0(%x: tensor<1024x512xf32>, %b: tensor<512x64xf32>):
    %a = "dojo.relu"(%x) : (tensor<1024x512xf32>) -> tensor<1024x512xf32>
    %0 = "dojo.matmul"(%a, %b) : (tensor<1024x512xf32>, tensor<512x64xf32>) -> tensor<1024x64xf32>
    "func.return"(%0) : (tensor<1024x64xf32>) -> ()
  }) : () -> ()
}) : () -> ()
