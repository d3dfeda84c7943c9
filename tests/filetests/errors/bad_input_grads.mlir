// RUN: dojo-opt %s --pass-pipeline='legalize-aten{input-grads=fast}'
/// An unknown `input-grads` form is an error naming the two there are.
"builtin.module"() ({
^bb0:
}) : () -> ()
