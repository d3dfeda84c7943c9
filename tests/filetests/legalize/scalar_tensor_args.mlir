// RUN: dojo-opt %s --pass-pipeline='legalize-aten,lower-to-d1{mesh=d1:2x2}'
/// Python numbers passed for Tensor arguments (as decompositions do: mul.Tensor(x, 2),
/// where.self(c, 0.0, y)) arrive as attributes named by the schema and become constants.
"builtin.module"() ({
  "func.func"() <{function_type = (tensor<8x8xf32>) -> (tensor<8x8xf32>, tensor<8x8xi1>), sym_name = "f"}> ({
  ^bb0(%x: tensor<8x8xf32>):
    %0 = "aten.mul.Tensor"(%x) {other = 2 : i64} : (tensor<8x8xf32>) -> tensor<8x8xf32>
    %1 = "aten.gt.Tensor"(%0) {other = 0.5 : f64} : (tensor<8x8xf32>) -> tensor<8x8xi1>
    %2 = "aten.where.self"(%1, %x) {self = 0.0 : f64} : (tensor<8x8xi1>, tensor<8x8xf32>) -> tensor<8x8xf32>
    "func.return"(%2, %1) : (tensor<8x8xf32>, tensor<8x8xi1>) -> ()
  }) : () -> ()
}) : () -> ()
