// RUN: dojo-opt %s --pass-pipeline='lower-to-d1{mesh=d1:8x8},dce'
/// A sum over a batch that the matmul split over mesh rows (as a weight gradient's slabs
/// are), whose partials would not fit on one core: 8 rows' [32, 1200] partials are 1.23 MB,
/// a core has 1.125 MiB. A reduce-scatter instead of a gather: the rows' axis moves to the
/// largest kept dim (9600 columns, already over mesh columns, so to the 32 rows), and each
/// core sums the 8 partials of its [4, 1200] slice. The result runs and matches the
/// reference. It does not fit under the naive plan (`b` on every core is 4.9 MB).
"builtin.module"() ({
  "func.func"() <{function_type = (tensor<16x32x8xf32>, tensor<16x8x9600xf32>) -> (tensor<32x9600xf32>), sym_name = "f"}> ({
  ^bb0(%a: tensor<16x32x8xf32>, %b: tensor<16x8x9600xf32>):
    %0 = "dojo.matmul"(%a, %b) : (tensor<16x32x8xf32>, tensor<16x8x9600xf32>) -> tensor<16x32x9600xf32>
    %1 = "dojo.reduce_sum"(%0) {dims = array<i64: 0>, keepdim = false} : (tensor<16x32x9600xf32>) -> tensor<32x9600xf32>
    "func.return"(%1) : (tensor<32x9600xf32>) -> ()
  }) : () -> ()
}) : () -> ()
