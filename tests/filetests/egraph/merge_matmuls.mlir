// RUN: dojo-opt %s --pass-pipeline='egraph-optimize'
/// merge-matmuls: Q, K and V projections of the same activations (weights computed on the
/// mesh here, not loaded) become one matmul on the joined weights, each projection a slice.
"builtin.module"() ({
  "func.func"() <{function_type = (tensor<128x64xf32>, tensor<64x64xf32>, tensor<64x64xf32>, tensor<64x64xf32>) -> (tensor<128x64xf32>, tensor<128x64xf32>, tensor<128x64xf32>), sym_name = "f"}> ({
  ^bb0(%x: tensor<128x64xf32>, %a: tensor<64x64xf32>, %b: tensor<64x64xf32>, %c: tensor<64x64xf32>):
    %wq = "dojo.tanh"(%a) : (tensor<64x64xf32>) -> tensor<64x64xf32>
    %wk = "dojo.tanh"(%b) : (tensor<64x64xf32>) -> tensor<64x64xf32>
    %wv = "dojo.tanh"(%c) : (tensor<64x64xf32>) -> tensor<64x64xf32>
    %q = "dojo.matmul"(%x, %wq) : (tensor<128x64xf32>, tensor<64x64xf32>) -> tensor<128x64xf32>
    %k = "dojo.matmul"(%x, %wk) : (tensor<128x64xf32>, tensor<64x64xf32>) -> tensor<128x64xf32>
    %v = "dojo.matmul"(%x, %wv) : (tensor<128x64xf32>, tensor<64x64xf32>) -> tensor<128x64xf32>
    "func.return"(%q, %k, %v) : (tensor<128x64xf32>, tensor<128x64xf32>, tensor<128x64xf32>) -> ()
  }) : () -> ()
}) : () -> ()
