// RUN: dojo-opt %s --pass-pipeline='lower-to-d1{mesh=core}'
/// A GEMM whose operands do not fit one core's SRAM (`a` alone is 1.28 MB), its result only
/// going to the host, is computed in row blocks (2 x 8 rows) with both operands streamed from
/// the host in panels: each block loads its own panels of `b` again (5 K steps each), and
/// `d1.store {dim = 0}` takes the blocks. It does not fit under the naive plan (no row blocks).
"builtin.module"() ({
  "func.func"() <{function_type = (tensor<16x20000xf32>, tensor<20000x8xf32>) -> (tensor<16x8xf32>), sym_name = "f"}> ({
  ^bb0(%a: tensor<16x20000xf32>, %b: tensor<20000x8xf32>):
    %0 = "dojo.matmul"(%a, %b) : (tensor<16x20000xf32>, tensor<20000x8xf32>) -> tensor<16x8xf32>
    "func.return"(%0) : (tensor<16x8xf32>) -> ()
  }) : () -> ()
}) : () -> ()
