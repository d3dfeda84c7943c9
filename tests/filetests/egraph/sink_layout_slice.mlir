// RUN: dojo-opt %s --pass-pipeline='egraph-optimize'
/// sink-layout-slice: a pooling window's slices of a transposed value sink below the
/// transpose (offsets and strides permuted with the dims), the max of the windows follows
/// (`sink-transpose-maximum`) and the transpose back cancels: the pool runs on the value as
/// it is. `@tap` slices that only feed a reshape (a convolution's taps) stay where they are.
"builtin.module"() ({
  "func.func"() <{function_type = (tensor<4x6x8xf32>) -> tensor<2x6x8xf32>, sym_name = "f"}> ({
  ^bb0(%x: tensor<4x6x8xf32>):
    %0 = "dojo.transpose"(%x) {perm = array<i64: 2, 0, 1>} : (tensor<4x6x8xf32>) -> tensor<8x4x6xf32>
    %1 = "dojo.slice"(%0) {offsets = array<i64: 0, 0, 0>, strides = array<i64: 1, 2, 1>} : (tensor<8x4x6xf32>) -> tensor<8x2x6xf32>
    %2 = "dojo.slice"(%0) {offsets = array<i64: 0, 1, 0>, strides = array<i64: 1, 2, 1>} : (tensor<8x4x6xf32>) -> tensor<8x2x6xf32>
    %3 = "dojo.maximum"(%1, %2) : (tensor<8x2x6xf32>, tensor<8x2x6xf32>) -> tensor<8x2x6xf32>
    %4 = "dojo.transpose"(%3) {perm = array<i64: 1, 2, 0>} : (tensor<8x2x6xf32>) -> tensor<2x6x8xf32>
    "func.return"(%4) : (tensor<2x6x8xf32>) -> ()
  }) : () -> ()
  "func.func"() <{function_type = (tensor<4x6x8xf32>) -> tensor<8x12xf32>, sym_name = "tap"}> ({
  ^bb0(%x: tensor<4x6x8xf32>):
    %0 = "dojo.transpose"(%x) {perm = array<i64: 2, 0, 1>} : (tensor<4x6x8xf32>) -> tensor<8x4x6xf32>
    %1 = "dojo.slice"(%0) {offsets = array<i64: 0, 1, 0>, strides = array<i64: 1, 1, 1>} : (tensor<8x4x6xf32>) -> tensor<8x2x6xf32>
    %2 = "dojo.reshape"(%1) : (tensor<8x2x6xf32>) -> tensor<8x12xf32>
    "func.return"(%2) : (tensor<8x12xf32>) -> ()
  }) : () -> ()
}) : () -> ()
