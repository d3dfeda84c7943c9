// RUN: dojo-opt %s
/// Graph-level ops with every attribute kind print back exactly as parsed.
"builtin.module"() ({
  "func.func"() <{function_type = (tensor<4x8xf32>, tensor<8xf32>) -> (tensor<4x8xf32>, tensor<8x1xf32>), sym_name = "f"}> ({
  ^bb0(%a: tensor<4x8xf32>, %b: tensor<8xf32>):
    %c = "dojo.constant"() {value = -2.5e-7 : f64} : () -> tensor<f32>
    %0 = "dojo.add"(%a, %b) : (tensor<4x8xf32>, tensor<8xf32>) -> tensor<4x8xf32>
    %1 = "dojo.cmp"(%0, %c) {predicate = "gt"} : (tensor<4x8xf32>, tensor<f32>) -> tensor<4x8xi1>
    %2 = "dojo.select"(%1, %0, %c) : (tensor<4x8xi1>, tensor<4x8xf32>, tensor<f32>) -> tensor<4x8xf32>
    %3 = "dojo.reduce_sum"(%2) {dims = array<i64: 0>, keepdim = true} : (tensor<4x8xf32>) -> tensor<1x8xf32>
    %4 = "dojo.transpose"(%3) {perm = array<i64: 1, 0>} : (tensor<1x8xf32>) -> tensor<8x1xf32>
    "func.return"(%2, %4) : (tensor<4x8xf32>, tensor<8x1xf32>) -> ()
  }) : () -> ()
}) : () -> ()
