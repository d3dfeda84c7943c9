// RUN: dojo-opt %s --pass-pipeline='legalize-aten{input-grads=gather},dce,egraph-optimize{winograd=false}'
/// `legalize-aten{input-grads=gather}` writes the input gradient of a 3x3 convolution (64
/// channels, 28 x 28) as the forward convolution of the output gradient, padded by one, with
/// the kernel flipped (slices joined in reverse) and its channels swapped: nine taps of the
/// padded gradient joined into columns and one matmul [1, 784, 576] @ [1, 576, 64] by the
/// flipped weight. `egraph-optimize` (here without Winograd, which the pytest
/// `test_egraph_runs_input_gradients_of_3x3_convolutions_as_winograd` covers: its rounding
/// over 576 products exceeds the interpreter check's 1e-5) makes the check run: the result
/// equals the scattered form's (`legalize-aten`'s default, the reference) on the interpreter.
"builtin.module"() ({
  "func.func"() <{function_type = (tensor<1x64x28x28xf32>, tensor<64x64x3x3xf32>, tensor<1x64x28x28xf32>) -> (tensor<1x64x28x28xf32>), sym_name = "f"}> ({
  ^bb0(%x: tensor<1x64x28x28xf32>, %w: tensor<64x64x3x3xf32>, %gy: tensor<1x64x28x28xf32>):
    %0 = "aten.convolution_backward.default"(%gy, %x, %w) {bias_sizes = array<i64: 64>, dilation = array<i64: 1, 1>, fx.node = "convolution_backward", groups = 1 : i64, output_mask = [true, false, false], output_padding = array<i64: 0, 0>, padding = array<i64: 1, 1>, stride = array<i64: 1, 1>, transposed = false} : (tensor<1x64x28x28xf32>, tensor<1x64x28x28xf32>, tensor<64x64x3x3xf32>) -> (tensor<1x64x28x28xf32>)
    "func.return"(%0) : (tensor<1x64x28x28xf32>) -> ()
  }) : () -> ()
}) : () -> ()
