// RUN: dojo-opt %s --pass-pipeline='lower-to-d1{mesh=d1},dce'
/// f32 matmuls with 98 rows (resnet50's last stage at batch 2) compute on the FP32 SIMD unit,
/// whose lanes run along a row: %0 (6 us on 16 x 16 cores) splits its rows over all 16 mesh
/// rows (6 or 7 rows a shard, 16 x 16 cores), not 12 of 8 or 9. %1 computes for well under
/// `THIN_ROWS_MIN_MATMUL_S` and keeps shards of at least 8 rows (12 x 16 cores). The Program
/// matches the reference on the simulator.
"builtin.module"() ({
  "func.func"() <{function_type = (tensor<98x2048xf32>, tensor<2048x256xf32>, tensor<98x64xf32>, tensor<64x256xf32>) -> (tensor<98x256xf32>, tensor<98x256xf32>), sym_name = "f"}> ({
  ^bb0(%a: tensor<98x2048xf32>, %b: tensor<2048x256xf32>, %c: tensor<98x64xf32>, %d: tensor<64x256xf32>):
    %0 = "dojo.matmul"(%a, %b) : (tensor<98x2048xf32>, tensor<2048x256xf32>) -> tensor<98x256xf32>
    %1 = "dojo.matmul"(%c, %d) : (tensor<98x64xf32>, tensor<64x256xf32>) -> tensor<98x256xf32>
    "func.return"(%0, %1) : (tensor<98x256xf32>, tensor<98x256xf32>) -> ()
  }) : () -> ()
}) : () -> ()
