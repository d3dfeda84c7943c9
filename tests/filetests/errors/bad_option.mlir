// RUN: dojo-opt %s --pass-pipeline='lower-to-d1{meshh=d1}'
/// A misspelt pass option names the options the pass has.
"builtin.module"() ({
^bb0:
}) : () -> ()
