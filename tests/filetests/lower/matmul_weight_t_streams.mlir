// RUN: dojo-opt %s --pass-pipeline='lower-to-d1{mesh=d1:2x2}'
/// `x @ w.t()` (nn.Linear) whose weight `w` (8 MiB) is larger than the four cores' SRAM: the
/// transpose of the argument is not loaded whole; each K step loads its box of `w` straight
/// into the matmul's column layout and transposes it on every core.
/// It does not fit under the naive plan (which loads the weight whole).
"builtin.module"() ({
  "func.func"() <{function_type = (tensor<1x4096xf32>, tensor<512x4096xf32>) -> (tensor<1x512xf32>), sym_name = "f"}> ({
  ^bb0(%x: tensor<1x4096xf32>, %w: tensor<512x4096xf32>):
    %0 = "dojo.transpose"(%w) {perm = array<i64: 1, 0>} : (tensor<512x4096xf32>) -> tensor<4096x512xf32>
    %1 = "dojo.matmul"(%x, %0) : (tensor<1x4096xf32>, tensor<4096x512xf32>) -> tensor<1x512xf32>
    "func.return"(%1) : (tensor<1x512xf32>) -> ()
  }) : () -> ()
}) : () -> ()
