// RUN: dojo-opt %s --pass-pipeline='lower-to-d1{mesh=d1}'
/// Reductions over split dims gather partials along the mesh axis; broadcasts replicate;
/// a reshape that regroups non-unit dims gathers onto one core first.
"builtin.module"() ({
  "func.func"() <{function_type = (tensor<64x32xf32>, tensor<32xf32>) -> (tensor<32xf32>, tensor<64xf32>, tensor<2x64x32xf32>, tensor<32x64xf32>), sym_name = "f"}> ({
  ^bb0(%x: tensor<64x32xf32>, %b: tensor<32xf32>):
    %0 = "dojo.reduce_sum"(%x) {dims = array<i64: 0>, keepdim = false} : (tensor<64x32xf32>) -> tensor<32xf32>
    %1 = "dojo.reduce_sum"(%x) {dims = array<i64: 1>, keepdim = false} : (tensor<64x32xf32>) -> tensor<64xf32>
    %2 = "dojo.broadcast"(%x) : (tensor<64x32xf32>) -> tensor<2x64x32xf32>
    %3 = "dojo.reshape"(%x) : (tensor<64x32xf32>) -> tensor<32x64xf32>
    %4 = "dojo.sub"(%0, %b) : (tensor<32xf32>, tensor<32xf32>) -> tensor<32xf32>
    "func.return"(%4, %1, %2, %3) : (tensor<32xf32>, tensor<64xf32>, tensor<2x64x32xf32>, tensor<32x64xf32>) -> ()
  }) : () -> ()
}) : () -> ()
