// RUN: dojo-opt %s --pass-pipeline='lower-to-d1{mesh=d1:4x4},dce'
/// A reshape that splits a dim into a short outer one ([64, 16384] -> [2, 32, 16384], like
/// GPT-2's logits [4096, 50257] -> [8, 512, 50257]) can carry a row split of at most 2 chunks:
/// 2 x 4 cores would hold 512 KiB shards, over a quarter of a core's SRAM. It splits the last
/// dim over all 16 cores instead (split 2: row-major over the block), 256 KiB each, and the
/// reshape stays local.
"builtin.module"() ({
  "func.func"() <{function_type = (tensor<64x16384xf32>) -> (tensor<2x32x16384xf32>), sym_name = "f"}> ({
  ^bb0(%a: tensor<64x16384xf32>):
    %0 = "dojo.neg"(%a) : (tensor<64x16384xf32>) -> tensor<64x16384xf32>
    %1 = "dojo.reshape"(%0) : (tensor<64x16384xf32>) -> tensor<2x32x16384xf32>
    %2 = "dojo.neg"(%1) : (tensor<2x32x16384xf32>) -> tensor<2x32x16384xf32>
    "func.return"(%2) : (tensor<2x32x16384xf32>) -> ()
  }) : () -> ()
}) : () -> ()
