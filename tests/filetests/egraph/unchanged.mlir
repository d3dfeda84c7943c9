// RUN: dojo-opt %s --pass-pipeline='egraph-optimize{epilogues=false}'
/// A graph the rules cannot improve comes out byte-identical (same op order and names).
/// (With epilogues, the default, the relu runs in the matmul's kernel: fuse_epilogue.mlir.)
"builtin.module"() ({
  "func.func"() <{function_type = (tensor<32x64xf32>, tensor<64x16xf32>) -> tensor<32x16xf32>, sym_name = "f"}> ({
  ^bb0(%x: tensor<32x64xf32>, %w: tensor<64x16xf32>):
    %0 = "dojo.matmul"(%x, %w) : (tensor<32x64xf32>, tensor<64x16xf32>) -> tensor<32x16xf32>
    %1 = "dojo.relu"(%0) : (tensor<32x16xf32>) -> tensor<32x16xf32>
    "func.return"(%1) : (tensor<32x16xf32>) -> ()
  }) : () -> ()
}) : () -> ()
