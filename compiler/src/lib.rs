//! torch-dojo IR: modules of functions over typed tensors, its text form (MLIR generic
//! syntax), parser, printer, verifier, the `dojo`/`d1` dialect rules and the pass manager.
//!
//! **Architecture invariant:** this crate knows nothing of egg, pyo3, torch, MLIR-the-library
//! or the simulator. It has no dependencies and builds and tests in seconds.

pub mod dialect;
pub mod ir;
pub mod layout;
pub mod parse;
pub mod pass;
pub mod print;
pub mod verify;

pub use ir::{attr, tensor, Attr, CFloatFormat, ElemType, Func, Module, Op, TensorType, Type, Value};
pub use layout::{Layout, Region};
pub use parse::{parse_module, parse_module_with_locations, Diagnostic, SourceMap};
pub use pass::{parse_pipeline, Pass, PassError, PassManager, PassSpec, UnsupportedOp};
pub use print::print_module;
pub use verify::{verify, VerifyError};
