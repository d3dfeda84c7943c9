// RUN: dojo-opt %s --pass-pipeline=legalize-aten,fuse-everything
/// An unknown pass name lists the registered passes.
"builtin.module"() ({
^bb0:
}) : () -> ()
