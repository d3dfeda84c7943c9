// RUN: dojo-opt %s --pass-pipeline='egraph-optimize'
/// sink-layout-pad: a transpose sinks below a pad (its amounts permuted with the dims) and
/// meets its inverse: the pad applies to the untransposed value and both transposes cancel.
/// Through a reshape it sinks only where the padded axes stay whole (`@through_reshape`:
/// unit dims added and removed around the pad; `@split_axis` pads an axis the reshape made
/// from two: it stays).
"builtin.module"() ({
  "func.func"() <{function_type = (tensor<4x6x8xf32>) -> tensor<6x8x8xf32>, sym_name = "f"}> ({
  ^bb0(%x: tensor<4x6x8xf32>):
    %0 = "dojo.transpose"(%x) {perm = array<i64: 2, 0, 1>} : (tensor<4x6x8xf32>) -> tensor<8x4x6xf32>
    %1 = "dojo.pad"(%0) {high = array<i64: 0, 1, 1>, interior = array<i64: 0, 0, 0>, low = array<i64: 0, 1, 1>, value = -1.5 : f64} : (tensor<8x4x6xf32>) -> tensor<8x6x8xf32>
    %2 = "dojo.transpose"(%1) {perm = array<i64: 1, 2, 0>} : (tensor<8x6x8xf32>) -> tensor<6x8x8xf32>
    "func.return"(%2) : (tensor<6x8x8xf32>) -> ()
  }) : () -> ()
  "func.func"() <{function_type = (tensor<8x4x6xf32>) -> tensor<8x6x10xf32>, sym_name = "through_reshape"}> ({
  ^bb0(%x: tensor<8x4x6xf32>):
    %0 = "dojo.reshape"(%x) : (tensor<8x4x6xf32>) -> tensor<1x8x4x1x6xf32>
    %1 = "dojo.pad"(%0) {high = array<i64: 0, 0, 1, 0, 2>, interior = array<i64: 0, 0, 0, 0, 0>, low = array<i64: 0, 0, 1, 0, 2>, value = 0.0 : f64} : (tensor<1x8x4x1x6xf32>) -> tensor<1x8x6x1x10xf32>
    %2 = "dojo.reshape"(%1) : (tensor<1x8x6x1x10xf32>) -> tensor<8x6x10xf32>
    "func.return"(%2) : (tensor<8x6x10xf32>) -> ()
  }) : () -> ()
  "func.func"() <{function_type = (tensor<4x6x8xf32>) -> tensor<26x8xf32>, sym_name = "split_axis"}> ({
  ^bb0(%x: tensor<4x6x8xf32>):
    %0 = "dojo.reshape"(%x) : (tensor<4x6x8xf32>) -> tensor<24x8xf32>
    %1 = "dojo.pad"(%0) {high = array<i64: 1, 0>, interior = array<i64: 0, 0>, low = array<i64: 1, 0>, value = 0.0 : f64} : (tensor<24x8xf32>) -> tensor<26x8xf32>
    "func.return"(%1) : (tensor<26x8xf32>) -> ()
  }) : () -> ()
}) : () -> ()
