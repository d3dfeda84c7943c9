//! `torch_dojo._native`: the pyo3 extension, glue only. It hands a captured graph (JSON) to
//! `dojo_passes::driver`, moves torch tensors in and out of a compiled graph as tch tensors,
//! and raises typed `torch_dojo.DojoError` subclasses (see `errors.rs`). No compiler logic
//! lives here.

mod errors;
mod tensor;

use std::sync::Mutex;

use dojo_passes::driver::{self, CompiledGraph as DriverGraph};
use pyo3::prelude::*;

use errors::{
    guarded, CapacityError, DeviceError, DojoError, InvalidInputError, UnsupportedOpError,
};

/// Compile a captured graph (JSON, as `torch_dojo.capture` writes it) with options (a JSON
/// object) into a graph that runs on the simulated mesh.
#[pyfunction]
fn compile_graph(py: Python<'_>, graph_json: &str, options_json: &str) -> PyResult<CompiledGraph> {
    guarded(|| {
        let inner = py
            .detach(|| guarded_native(|| driver::compile_graph(graph_json, options_json)))?
            .map_err(|e| errors::to_py(py, &e))?;
        Ok(CompiledGraph {
            inner,
            last_profile: Mutex::new(None),
        })
    })
}

/// A graph compiled for the simulated mesh: the Program, the IR after every stage, and the
/// profile of the last run.
#[pyclass(module = "torch_dojo._native", frozen)]
struct CompiledGraph {
    inner: DriverGraph,
    last_profile: Mutex<Option<String>>,
}

#[pymethods]
impl CompiledGraph {
    /// Run on the simulated mesh. `inputs` are torch tensors in the graph's input order; they
    /// are read as contiguous f32 on the CPU. Returns one tensor per graph output, with the
    /// graph's dtype.
    fn run(&self, py: Python<'_>, inputs: Vec<Bound<'_, PyAny>>) -> PyResult<Vec<Py<PyAny>>> {
        guarded(|| {
            let host = inputs
                .iter()
                .enumerate()
                .map(|(i, obj)| {
                    tensor::to_host_f32(obj)
                        .map_err(|m| InvalidInputError::new_err(format!("input {i}: {m}")))
                })
                .collect::<PyResult<Vec<_>>>()?;
            let views: Vec<(&[usize], &[f32])> = host
                .iter()
                .map(|h| (h.shape.as_slice(), h.data()))
                .collect();
            let result = py
                .detach(|| guarded_native(|| self.inner.run(&views)))?
                .map_err(|e| errors::to_py(py, &e))?;
            *self.last_profile.lock().unwrap_or_else(|p| p.into_inner()) =
                Some(result.profile_json);
            result
                .outputs
                .iter()
                .enumerate()
                .map(|(i, out)| {
                    tensor::from_host(py, out)
                        .map_err(|m| DeviceError::new_err(format!("output {i}: {m}")))
                })
                .collect()
        })
    }

    /// The simulator's profile of the last `run` as JSON (`"null"` before the first run).
    fn last_profile(&self) -> String {
        let last = self.last_profile.lock().unwrap_or_else(|p| p.into_inner());
        last.clone().unwrap_or_else(|| "null".to_owned())
    }

    /// `(stage name, IR text)` for every pipeline stage, starting with `import`.
    fn stages(&self) -> Vec<(String, String)> {
        self.inner.stages.clone()
    }

    /// The Program as JSON (byte-identical for identical graph and options).
    fn program_json(&self) -> String {
        self.inner.program_json.clone()
    }

    /// The dtypes of the outputs, in order (`"f32"`, `"bool"`, `"i64"`).
    #[getter]
    fn output_dtypes(&self) -> Vec<String> {
        self.inner.output_dtypes.clone()
    }

    fn __repr__(&self) -> String {
        format!(
            "<torch_dojo._native.CompiledGraph: {} stage(s), {} output(s)>",
            self.inner.stages.len(),
            self.inner.output_dtypes.len()
        )
    }
}

/// Runs driver code with the GIL released, turning a panic into a `DojoError` once the GIL is
/// back (the caller maps the `Err`).
fn guarded_native<T>(f: impl FnOnce() -> T) -> PyResult<T> {
    guarded(|| Ok(f()))
}

/// Panics inside the same guard every entry point uses; tests check it raises `DojoError`.
#[pyfunction]
fn _panic_for_tests(message: &str) -> PyResult<()> {
    guarded(|| panic!("{message}"))
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_function(wrap_pyfunction!(compile_graph, m)?)?;
    m.add_function(wrap_pyfunction!(_panic_for_tests, m)?)?;
    m.add_class::<CompiledGraph>()?;
    m.add("DojoError", py.get_type::<DojoError>())?;
    m.add("UnsupportedOpError", py.get_type::<UnsupportedOpError>())?;
    m.add("InvalidInputError", py.get_type::<InvalidInputError>())?;
    m.add("CapacityError", py.get_type::<CapacityError>())?;
    m.add("DeviceError", py.get_type::<DeviceError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
