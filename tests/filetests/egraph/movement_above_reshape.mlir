// RUN: dojo-opt %s --pass-pipeline='egraph-optimize'
/// movement-above-reshape: a pad before a reshape that keeps the padded axes whole moves after
/// it, to the layout where the placement keeps H and W whole on every core (`[1, H, W, 1, C]`:
/// only C is split, so the pad is a copy within each core's SRAM, not a reshard).
"builtin.module"() ({
  "func.func"() <{function_type = (tensor<16x16x64xf32>) -> tensor<1x18x18x1x64xf32>, sym_name = "f"}> ({
  ^bb0(%x: tensor<16x16x64xf32>):
    %0 = "dojo.pad"(%x) {high = array<i64: 1, 1, 0>, interior = array<i64: 0, 0, 0>, low = array<i64: 1, 1, 0>, value = 0.0 : f64} : (tensor<16x16x64xf32>) -> tensor<18x18x64xf32>
    %1 = "dojo.reshape"(%0) : (tensor<18x18x64xf32>) -> tensor<1x18x18x1x64xf32>
    "func.return"(%1) : (tensor<1x18x18x1x64xf32>) -> ()
  }) : () -> ()
}) : () -> ()
