// RUN: dojo-opt %s --pass-pipeline='legalize-aten,dce,lower-to-d1{mesh=d1},dce'
/// A product returned through a view that splits its rows ([24, 64] to [2, 12, 64]): the
/// product is stored as it is (`d1.store` into the view's shape), its row blocks of 8 going to
/// the boxes of samples and rows they cover (the middle block straddles the two samples), with
/// no reshard to a layout the view carries. The Program matches the reference on the
/// simulator.
"builtin.module"() ({
  "func.func"() <{function_type = (tensor<24x16xf32>, tensor<16x64xf32>) -> (tensor<2x12x64xf32>), sym_name = "forward"}> ({
  ^bb0(%a: tensor<24x16xf32>, %b: tensor<16x64xf32>):
    %0 = "aten.mm.default"(%a, %b) : (tensor<24x16xf32>, tensor<16x64xf32>) -> tensor<24x64xf32>
    %1 = "aten.view.default"(%0) {size = array<i64: 2, 12, 64>} : (tensor<24x64xf32>) -> tensor<2x12x64xf32>
    "func.return"(%1) : (tensor<2x12x64xf32>) -> ()
  }) : () -> ()
}) : () -> ()
