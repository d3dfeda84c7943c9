// RUN: dojo-opt %s
/// The verifier checks a matmul's epilogue: its text, that the op has the extra operands
/// the epilogue reads (x1, x2, ... after a and b), and that they broadcast to the result.
"builtin.module"() ({
  "func.func"() <{function_type = (tensor<4x8xf32>, tensor<8x16xf32>, tensor<16xf32>, tensor<4x1xf32>, tensor<8xf32>) -> (tensor<4x16xf32>, tensor<4x16xf32>, tensor<4x16xf32>, tensor<4x16xf32>), sym_name = "f"}> ({
  ^bb0(%a: tensor<4x8xf32>, %b: tensor<8x16xf32>, %c: tensor<16xf32>, %r: tensor<4x1xf32>, %bad: tensor<8xf32>):
    %0 = "dojo.matmul"(%a, %b, %c, %r) {epilogue = "add(x0,x1);mul(t0,x2);relu(t1)"} : (tensor<4x8xf32>, tensor<8x16xf32>, tensor<16xf32>, tensor<4x1xf32>) -> tensor<4x16xf32>
    %1 = "dojo.matmul"(%a, %b, %c) {epilogue = "add(x0,x2)"} : (tensor<4x8xf32>, tensor<8x16xf32>, tensor<16xf32>) -> tensor<4x16xf32>
    %2 = "dojo.matmul"(%a, %b, %bad) {epilogue = "add(x0,x1)"} : (tensor<4x8xf32>, tensor<8x16xf32>, tensor<8xf32>) -> tensor<4x16xf32>
    %3 = "dojo.matmul"(%a, %b) {epilogue = "gelu(x0)"} : (tensor<4x8xf32>, tensor<8x16xf32>) -> tensor<4x16xf32>
    "func.return"(%0, %1, %2, %3) : (tensor<4x16xf32>, tensor<4x16xf32>, tensor<4x16xf32>, tensor<4x16xf32>) -> ()
  }) : () -> ()
}) : () -> ()
