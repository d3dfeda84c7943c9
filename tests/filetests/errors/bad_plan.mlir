// RUN: dojo-opt %s --pass-pipeline='lower-to-d1{mesh=d1 plan=fast}'
/// An unknown plan is an error naming the plans there are.
"builtin.module"() ({
^bb0:
}) : () -> ()
