// RUN: dojo-opt %s --pass-pipeline='egraph-optimize{epilogues=false}'
/// concat-of-maps: the same bias and activation on each column window of one product, joined:
/// one bias add (the biases, computed on the mesh, joined) and one activation over the whole
/// product (%y). One per-row scale of both windows (%z) is one scale of the product.
"builtin.module"() ({
  "func.func"() <{function_type = (tensor<64x16xf32>, tensor<16x16xf32>, tensor<1x8xf32>, tensor<1x8xf32>, tensor<64x1xf32>) -> (tensor<64x16xf32>, tensor<64x16xf32>), sym_name = "f"}> ({
  ^bb0(%x: tensor<64x16xf32>, %a: tensor<16x16xf32>, %b1: tensor<1x8xf32>, %b2: tensor<1x8xf32>, %r: tensor<64x1xf32>):
    %w = "dojo.tanh"(%a) : (tensor<16x16xf32>) -> tensor<16x16xf32>
    %p = "dojo.matmul"(%x, %w) : (tensor<64x16xf32>, tensor<16x16xf32>) -> tensor<64x16xf32>
    %lo = "dojo.slice"(%p) {offsets = array<i64: 0, 0>, strides = array<i64: 1, 1>} : (tensor<64x16xf32>) -> tensor<64x8xf32>
    %hi = "dojo.slice"(%p) {offsets = array<i64: 0, 8>, strides = array<i64: 1, 1>} : (tensor<64x16xf32>) -> tensor<64x8xf32>
    %c1 = "dojo.tanh"(%b1) : (tensor<1x8xf32>) -> tensor<1x8xf32>
    %c2 = "dojo.tanh"(%b2) : (tensor<1x8xf32>) -> tensor<1x8xf32>
    %l1 = "dojo.add"(%lo, %c1) : (tensor<64x8xf32>, tensor<1x8xf32>) -> tensor<64x8xf32>
    %h1 = "dojo.add"(%hi, %c2) : (tensor<64x8xf32>, tensor<1x8xf32>) -> tensor<64x8xf32>
    %l2 = "dojo.relu"(%l1) : (tensor<64x8xf32>) -> tensor<64x8xf32>
    %h2 = "dojo.relu"(%h1) : (tensor<64x8xf32>) -> tensor<64x8xf32>
    %y = "dojo.concat"(%l2, %h2) {dim = 1 : i64} : (tensor<64x8xf32>, tensor<64x8xf32>) -> tensor<64x16xf32>
    %lr = "dojo.mul"(%lo, %r) : (tensor<64x8xf32>, tensor<64x1xf32>) -> tensor<64x8xf32>
    %hr = "dojo.mul"(%hi, %r) : (tensor<64x8xf32>, tensor<64x1xf32>) -> tensor<64x8xf32>
    %z = "dojo.concat"(%lr, %hr) {dim = 1 : i64} : (tensor<64x8xf32>, tensor<64x8xf32>) -> tensor<64x16xf32>
    "func.return"(%y, %z) : (tensor<64x16xf32>, tensor<64x16xf32>) -> ()
  }) : () -> ()
}) : () -> ()
