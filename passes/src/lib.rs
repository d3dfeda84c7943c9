//! torch-dojo transformations: importing captured aten graphs, legalization to the `dojo`
//! dialect, lowering to mesh-level `d1` IR, and emission of a runtime `Program`.
//!
//! Entry points: [`driver`] for the Python extension, the `dojo-opt` binary for compiler
//! developers, and [`registry`] for pipelines. **Architecture invariant:** no pyo3 or torch
//! here; MLIR (melior) only in [`mlir`], behind the `mlir` feature.

pub mod dce;
pub mod driver;
pub mod egraph;
pub mod emit;
pub mod import;
pub mod interp;
pub mod legalize;
pub mod lower;
pub mod precision;
#[cfg(feature = "mlir")]
pub mod mlir;
pub mod registry;
pub mod split;
