// RUN: dojo-opt %s --pass-pipeline='lower-to-d1{mesh=d1:4x4},dce'
/// A fused elementwise chain (`dojo.fused`, what `egraph-optimize` makes of a chain of maps)
/// lowers to one `d1.map {fn = "fused"}` over operands aligned to the result's layout, with a
/// row-broadcast operand, a constant, a comparison inside and a bool operand from outside.
"builtin.module"() ({
  "func.func"() <{function_type = (tensor<16x24xf32>, tensor<16x24xf32>, tensor<24xf32>) -> (tensor<16x24xf32>), sym_name = "f"}> ({
  ^bb0(%a: tensor<16x24xf32>, %b: tensor<16x24xf32>, %c: tensor<24xf32>):
    %0 = "dojo.cmp"(%a, %b) {predicate = "gt"} : (tensor<16x24xf32>, tensor<16x24xf32>) -> tensor<16x24xi1>
    %1 = "dojo.fused"(%a, %b, %c, %0) {expr = "mul(x0,0.5);add(t0,x2);tanh(t1);lt(t2,0.25);select(x3,t2,x1);mul(t4,t3)"} : (tensor<16x24xf32>, tensor<16x24xf32>, tensor<24xf32>, tensor<16x24xi1>) -> tensor<16x24xf32>
    "func.return"(%1) : (tensor<16x24xf32>) -> ()
  }) : () -> ()
}) : () -> ()
