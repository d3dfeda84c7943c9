// RUN: dojo-opt %s --pass-pipeline='egraph-optimize'
/// fuse-elementwise: a chain of maps (scale, bias add with a broadcast row, tanh, a residual
/// add) and a select of a comparison become one `dojo.fused` kernel; the splat constant
/// becomes a literal. `%2`, also returned, is computed once on its own and again inside the
/// kernel only if that is cheaper than reading it back.
"builtin.module"() ({
  "func.func"() <{function_type = (tensor<64x256xf32>, tensor<256xf32>, tensor<64x256xf32>) -> (tensor<64x256xf32>, tensor<64x256xf32>), sym_name = "f"}> ({
  ^bb0(%x: tensor<64x256xf32>, %b: tensor<256xf32>, %r: tensor<64x256xf32>):
    %h = "dojo.constant"() {value = 5.000000e-01 : f64} : () -> tensor<f32>
    %z = "dojo.constant"() {value = 0.000000e+00 : f64} : () -> tensor<f32>
    %0 = "dojo.mul"(%x, %h) : (tensor<64x256xf32>, tensor<f32>) -> tensor<64x256xf32>
    %1 = "dojo.add"(%0, %b) : (tensor<64x256xf32>, tensor<256xf32>) -> tensor<64x256xf32>
    %2 = "dojo.tanh"(%1) : (tensor<64x256xf32>) -> tensor<64x256xf32>
    %3 = "dojo.add"(%2, %r) : (tensor<64x256xf32>, tensor<64x256xf32>) -> tensor<64x256xf32>
    %4 = "dojo.cmp"(%3, %z) {predicate = "gt"} : (tensor<64x256xf32>, tensor<f32>) -> tensor<64x256xi1>
    %5 = "dojo.select"(%4, %3, %r) : (tensor<64x256xi1>, tensor<64x256xf32>, tensor<64x256xf32>) -> tensor<64x256xf32>
    "func.return"(%5, %2) : (tensor<64x256xf32>, tensor<64x256xf32>) -> ()
  }) : () -> ()
}) : () -> ()
