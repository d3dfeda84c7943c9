// RUN: dojo-opt %s --pass-pipeline='egraph-optimize'
/// widen-into-taps: a 1-wide and a 3-wide convolution of one input (SqueezeNet's fire expand,
/// in one spatial dim). The 1-wide product equals the 3-wide columns times its weights spread
/// to the center tap's rows (an interior pad of the weights); merge-matmuls makes one matmul
/// of both, and the two outputs joined are that matmul with its weights in their order: the
/// join of the outputs is gone.
"builtin.module"() ({
  "func.func"() <{function_type = (tensor<1x32x4xf32>, tensor<1x4x8xf32>, tensor<1x12x8xf32>) -> tensor<1x32x16xf32>, sym_name = "f"}> ({
  ^bb0(%x: tensor<1x32x4xf32>, %a: tensor<1x4x8xf32>, %b: tensor<1x12x8xf32>):
    %w1 = "dojo.tanh"(%a) : (tensor<1x4x8xf32>) -> tensor<1x4x8xf32>
    %w3 = "dojo.tanh"(%b) : (tensor<1x12x8xf32>) -> tensor<1x12x8xf32>
    %one = "dojo.matmul"(%x, %w1) : (tensor<1x32x4xf32>, tensor<1x4x8xf32>) -> tensor<1x32x8xf32>
    %r = "dojo.reshape"(%x) : (tensor<1x32x4xf32>) -> tensor<32x4xf32>
    %p = "dojo.pad"(%r) {high = array<i64: 1, 0>, interior = array<i64: 0, 0>, low = array<i64: 1, 0>, value = 0.0 : f64} : (tensor<32x4xf32>) -> tensor<34x4xf32>
    %q = "dojo.reshape"(%p) : (tensor<34x4xf32>) -> tensor<34x4x1xf32>
    %t0 = "dojo.slice"(%q) {offsets = array<i64: 0, 0, 0>, strides = array<i64: 1, 1, 1>} : (tensor<34x4x1xf32>) -> tensor<32x4x1xf32>
    %t1 = "dojo.slice"(%q) {offsets = array<i64: 1, 0, 0>, strides = array<i64: 1, 1, 1>} : (tensor<34x4x1xf32>) -> tensor<32x4x1xf32>
    %t2 = "dojo.slice"(%q) {offsets = array<i64: 2, 0, 0>, strides = array<i64: 1, 1, 1>} : (tensor<34x4x1xf32>) -> tensor<32x4x1xf32>
    %taps = "dojo.concat"(%t0, %t1, %t2) {dim = 2 : i64} : (tensor<32x4x1xf32>, tensor<32x4x1xf32>, tensor<32x4x1xf32>) -> tensor<32x4x3xf32>
    %cols = "dojo.reshape"(%taps) : (tensor<32x4x3xf32>) -> tensor<1x32x12xf32>
    %three = "dojo.matmul"(%cols, %w3) : (tensor<1x32x12xf32>, tensor<1x12x8xf32>) -> tensor<1x32x8xf32>
    %y = "dojo.concat"(%one, %three) {dim = 2 : i64} : (tensor<1x32x8xf32>, tensor<1x32x8xf32>) -> tensor<1x32x16xf32>
    "func.return"(%y) : (tensor<1x32x16xf32>) -> ()
  }) : () -> ()
}) : () -> ()
