// RUN: dojo-opt %s --pass-pipeline='lower-to-d1{mesh=d1:4x4}'
/// A matmul with an epilogue (bias row, residual, relu) lowers to SUMMA over several K steps
/// in row blocks (as summa_steps.mlir): only the last K step of each row block carries the
/// `epilogue`, with the residual's rows of that block and the bias aligned to the result's
/// layout (each core's columns, replicated over rows); the earlier steps accumulate as usual.
"builtin.module"() ({
  "func.func"() <{function_type = (tensor<128x4096xf32>, tensor<4096x128xf32>, tensor<128xf32>, tensor<128x128xf32>) -> (tensor<128x128xf32>), sym_name = "f"}> ({
  ^bb0(%a: tensor<128x4096xf32>, %b: tensor<4096x128xf32>, %bias: tensor<128xf32>, %r: tensor<128x128xf32>):
    %0 = "dojo.matmul"(%a, %b, %bias, %r) {epilogue = "add(x0,x1);add(t0,x2);relu(t1)"} : (tensor<128x4096xf32>, tensor<4096x128xf32>, tensor<128xf32>, tensor<128x128xf32>) -> tensor<128x128xf32>
    "func.return"(%0) : (tensor<128x128xf32>) -> ()
  }) : () -> ()
}) : () -> ()
