// RUN: dojo-opt %s --pass-pipeline='split-batch{mesh=tile parts=2},legalize-aten,dce,lower-to-d1{mesh=tile},dce'
/// A part's matmul long enough on one 16 x 16 block (512 x 512 x 1024, 0.5 GFLOP: above
/// `PART_MIN_MATMUL_S`) runs as SUMMA over its whole block of 2 x 5 chips (part 1's from
/// usable row 34), its panels multicast across the chips' edges. The Program matches the
/// reference on the simulator.
"builtin.module"() ({
  "func.func"() <{function_type = (tensor<2x512xi64>, tensor<64x512xf32>, tensor<1024x512xf32>) -> (tensor<2x512x1024xf32>), sym_name = "forward"}> ({
  ^bb0(%ids: tensor<2x512xi64>, %table: tensor<64x512xf32>, %w: tensor<1024x512xf32>):
    %0 = "aten.embedding.default"(%table, %ids) : (tensor<64x512xf32>, tensor<2x512xi64>) -> tensor<2x512x512xf32>
    %1 = "aten.view.default"(%0) {size = array<i64: 1024, 512>} : (tensor<2x512x512xf32>) -> tensor<1024x512xf32>
    %2 = "aten.t.default"(%w) : (tensor<1024x512xf32>) -> tensor<512x1024xf32>
    %3 = "aten.mm.default"(%1, %2) : (tensor<1024x512xf32>, tensor<512x1024xf32>) -> tensor<1024x1024xf32>
    %4 = "aten.view.default"(%3) {size = array<i64: 2, 512, 1024>} : (tensor<1024x1024xf32>) -> tensor<2x512x1024xf32>
    "func.return"(%4) : (tensor<2x512x1024xf32>) -> ()
  }) : () -> ()
}) : () -> ()
