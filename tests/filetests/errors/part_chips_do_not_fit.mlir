// RUN: dojo-opt %s --pass-pipeline='lower-to-d1{mesh=tile}'
/// Parts on blocks of 3 x 5 chips (`dojo.part_chips`): a tile's 5 x 5 chips hold one such
/// block, so part 1 has none; the error names the op, the part and how many blocks there are.
"builtin.module"() ({
  "func.func"() <{function_type = (tensor<2x4xf32>) -> (tensor<1x4xf32>), sym_name = "forward"}> ({
  ^bb0(%x: tensor<2x4xf32>):
    %0 = "dojo.slice"(%x) {offsets = array<i64: 1, 0>, strides = array<i64: 1, 1>} : (tensor<2x4xf32>) -> tensor<1x4xf32>
    %1 = "dojo.on_chip"(%0) {chip = 1 : i64} : (tensor<1x4xf32>) -> tensor<1x4xf32>
    "func.return"(%1) : (tensor<1x4xf32>) -> ()
  }) {dojo.part_chips = array<i64: 3, 5>} : () -> ()
}) : () -> ()
