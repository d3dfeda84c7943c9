// RUN: dojo-opt %s --pass-pipeline='lower-to-d1{mesh=d1:40x40}'
/// An impossible mesh slice is an error saying which presets exist.
"builtin.module"() ({
^bb0:
}) : () -> ()
