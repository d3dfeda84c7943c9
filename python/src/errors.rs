//! The one place where Rust errors become Python exceptions. `DojoError::kind()` names the
//! class, the message is the error's `Display`; a Rust panic becomes a `DojoError` saying it
//! is an internal error instead of aborting (or surfacing as pyo3's `PanicException`).

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};

use dojo_passes::driver::DojoError as DriverError;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::PyTuple;

pyo3::create_exception!(
    torch_dojo,
    DojoError,
    PyException,
    "Base class of every torch-dojo error."
);
pyo3::create_exception!(
    torch_dojo,
    UnsupportedOpError,
    DojoError,
    "The graph uses ops torch-dojo cannot run yet; `ops` lists (target, node, operands) for each."
);
pyo3::create_exception!(
    torch_dojo,
    InvalidInputError,
    DojoError,
    "Malformed input: graph description, IR text, options or tensors."
);
pyo3::create_exception!(
    torch_dojo,
    CapacityError,
    DojoError,
    "The graph is valid but does not fit the target (SRAM, core count)."
);
pyo3::create_exception!(
    torch_dojo,
    DeviceError,
    DojoError,
    "The Program failed on the (simulated) device."
);

/// The Python exception for a driver error.
pub fn to_py(py: Python<'_>, err: &DriverError) -> PyErr {
    let msg = err.to_string();
    let py_err = match err.kind() {
        "UnsupportedOpError" => UnsupportedOpError::new_err(msg),
        "InvalidInputError" => InvalidInputError::new_err(msg),
        "CapacityError" => CapacityError::new_err(msg),
        "DeviceError" => DeviceError::new_err(msg),
        other => DojoError::new_err(format!("{msg} (error kind {other})")),
    };
    if let DriverError::Unsupported(ops) = err {
        let ops: Vec<(String, String, String)> = ops
            .iter()
            .map(|op| (op.target.clone(), op.node.clone(), op.operands.clone()))
            .collect();
        // Structured detail is a convenience; the message already says everything.
        let _ = PyTuple::new(py, ops).and_then(|t| py_err.value(py).setattr("ops", t));
    }
    py_err
}

/// Runs `f`, turning a panic into `DojoError("internal error: ...")`.
pub fn guarded<T>(f: impl FnOnce() -> PyResult<T>) -> PyResult<T> {
    catch_unwind(AssertUnwindSafe(f))
        .unwrap_or_else(|payload| Err(internal_error(payload.as_ref())))
}

fn internal_error(payload: &(dyn Any + Send)) -> PyErr {
    let what = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned());
    DojoError::new_err(format!(
        "internal error: {what}. This is a bug in torch-dojo; please report it with the model that triggered it."
    ))
}
