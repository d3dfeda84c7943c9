// RUN: dojo-opt %s --pass-pipeline='legalize-aten,dce,lower-to-d1{mesh=d1:4x4},dce'
/// Edge shapes: reductions of a rank-0 tensor over dim 0 are the tensor itself; a reshape
/// whose carriable dims cross ([4,6,4] -> [4,24] -> [96] style) still lowers validly.
"builtin.module"() ({
  "func.func"() <{function_type = (tensor<f32>, tensor<4x6x8xf32>) -> (tensor<f32>, tensor<f32>, tensor<24x8xf32>, tensor<192xf32>), sym_name = "f"}> ({
  ^bb0(%s: tensor<f32>, %x: tensor<4x6x8xf32>):
    %0 = "aten.sum.dim_IntList"(%s) {dim = array<i64: 0>, keepdim = false} : (tensor<f32>) -> tensor<f32>
    %1 = "aten.amax.default"(%s) {dim = array<i64: -1>, keepdim = true} : (tensor<f32>) -> tensor<f32>
    %2 = "aten.view.default"(%x) {size = array<i64: 24, 8>} : (tensor<4x6x8xf32>) -> tensor<24x8xf32>
    %3 = "aten.view.default"(%x) {size = array<i64: 192>} : (tensor<4x6x8xf32>) -> tensor<192xf32>
    "func.return"(%0, %1, %2, %3) : (tensor<f32>, tensor<f32>, tensor<24x8xf32>, tensor<192xf32>) -> ()
  }) : () -> ()
}) : () -> ()
