// RUN: dojo-opt %s --pass-pipeline='lower-to-d1{mesh=d1:4x4}'
/// On a 4x4 slice, a 128x4096 @ 4096x128 matmul does not fit in one step: SUMMA streams K in
/// slices and accumulates in place. Host operands are loaded panel by panel straight into the
/// step's row / column layout (`d1.load` of a box), so each step's load overlaps the step
/// before; emission loads each distinct box once and multicasts it to its replicas. The
/// result only goes to the host: it is computed in row blocks reusing b's panels (see
/// gemm_row_blocks.mlir).
"builtin.module"() ({
  "func.func"() <{function_type = (tensor<128x4096xf32>, tensor<4096x128xf32>) -> (tensor<128x128xf32>), sym_name = "f"}> ({
  ^bb0(%a: tensor<128x4096xf32>, %b: tensor<4096x128xf32>):
    %0 = "dojo.matmul"(%a, %b) : (tensor<128x4096xf32>, tensor<4096x128xf32>) -> tensor<128x128xf32>
    "func.return"(%0) : (tensor<128x128xf32>) -> ()
  }) : () -> ()
}) : () -> ()
