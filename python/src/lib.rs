//! `torch_dojo._native`: the pyo3 extension, glue only. It hands a captured graph (JSON) to
//! `dojo_passes::driver`, moves torch tensors in and out of a compiled graph as tch tensors,
//! and raises typed `torch_dojo.DojoError` subclasses (see `errors.rs`). No compiler logic
//! lives here.

mod cfloat;
mod errors;
mod tensor;

use std::sync::Mutex;

use dojo_passes::driver::{self, CompiledGraph as DriverGraph, RunResult};
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
        Ok(CompiledGraph::new(inner))
    })
}

/// Rebuild a compiled graph from a Program (JSON) and stages saved earlier, e.g. by the
/// compile cache. The Program is parsed and validated: a corrupt or truncated entry raises
/// `InvalidInputError` instead of giving a graph that runs.
#[pyfunction]
fn load_compiled(py: Python<'_>, program_json: &str, stages: Vec<(String, String)>) -> PyResult<CompiledGraph> {
    guarded(|| {
        let inner = py
            .detach(|| guarded_native(|| DriverGraph::from_saved(program_json, stages)))?
            .map_err(|e| errors::to_py(py, &e))?;
        Ok(CompiledGraph::new(inner))
    })
}

/// The ops of a captured graph (JSON) that the compiler cannot run, as
/// `(overload, node, operand types)`; empty when it can run them all.
#[pyfunction]
fn unsupported_ops(py: Python<'_>, graph_json: &str) -> PyResult<Vec<(String, String, String)>> {
    guarded(|| {
        let ops = py
            .detach(|| guarded_native(|| driver::unsupported_ops(graph_json)))?
            .map_err(|e| errors::to_py(py, &e))?;
        Ok(ops.into_iter().map(|o| (o.target, o.node, o.operands)).collect())
    })
}

/// A graph compiled for the simulated mesh: the Program, the IR after every stage, and the
/// profile of the last run.
#[pyclass(module = "torch_dojo._native", frozen)]
struct CompiledGraph {
    inner: DriverGraph,
    /// The last run's profile (timeline included, for `last_trace`) and numerics; its
    /// outputs are gone to the caller.
    last_run: Mutex<Option<RunResult>>,
    /// Per output, the input it is exactly (a `HostCopy`: the graph returns one of its
    /// inputs, as a training forward returns the weights its backward needs).
    passthrough: Vec<Option<usize>>,
}

impl CompiledGraph {
    fn new(inner: DriverGraph) -> CompiledGraph {
        let program = inner.program();
        let mut passthrough = vec![None; program.outputs.len()];
        for instr in &program.instrs {
            if let dojo_runtime::Instr::HostCopy { input, output } = instr {
                passthrough[*output] = Some(*input);
            }
        }
        // (Only if nothing else writes the output: the compiler never emits that, but a saved
        // Program may come from elsewhere.)
        for instr in &program.instrs {
            if let dojo_runtime::Instr::Store { output, .. } = instr {
                passthrough[*output] = None;
            }
        }
        CompiledGraph { inner, last_run: Mutex::new(None), passthrough }
    }
}

#[pymethods]
impl CompiledGraph {
    /// Run on the simulated mesh. `inputs` are torch tensors in the graph's input order; they
    /// are read as contiguous f32 on the CPU. `seed` seeds the graph's random numbers (the same
    /// seed gives the same values). Returns one tensor per graph output, with the graph's dtype;
    /// an output that is one of the inputs is that input tensor, as passed.
    #[pyo3(signature = (inputs, seed = 0))]
    fn run(&self, py: Python<'_>, inputs: Vec<Bound<'_, PyAny>>, seed: u64) -> PyResult<Vec<Py<PyAny>>> {
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
            let mut result = py
                .detach(|| guarded_native(|| self.inner.run_seeded(&views, seed)))?
                .map_err(|e| errors::to_py(py, &e))?;
            let outputs = std::mem::take(&mut result.outputs);
            *self.last_run.lock().unwrap_or_else(|p| p.into_inner()) = Some(result);
            outputs
                .iter()
                .enumerate()
                .map(|(i, out)| match self.passthrough.get(i).copied().flatten() {
                    // The input tensor itself, as the graph says (not a copy of its values).
                    Some(k) => Ok(inputs[k].clone().unbind()),
                    None => tensor::from_host(py, out)
                        .map_err(|m| DeviceError::new_err(format!("output {i}: {m}"))),
                })
                .collect()
        })
    }

    /// Whether the graph draws random numbers (dropout); `run` then takes a fresh `seed`.
    #[getter]
    fn uses_random(&self) -> bool {
        self.inner.uses_random()
    }

    /// The simulator's profile of the last `run` as JSON, without the timeline (`"null"`
    /// before the first run). Everything but `numerics` is the same for every run.
    fn last_profile(&self, py: Python<'_>) -> PyResult<String> {
        guarded(|| {
            let last = self.last_run.lock().unwrap_or_else(|p| p.into_inner());
            match last.as_ref() {
                None => Ok("null".to_owned()),
                Some(r) => r.profile_json().map_err(|e| errors::to_py(py, &e)),
            }
        })
    }

    /// The `numerics` of the last `run`'s profile as JSON: per storage-format tensor its
    /// bias, amax and flags (`"[]"` before the first run or without low-precision tensors).
    fn last_numerics(&self) -> String {
        let last = self.last_run.lock().unwrap_or_else(|p| p.into_inner());
        last.as_ref().map_or_else(|| "[]".to_owned(), RunResult::numerics_json)
    }

    /// The timeline of the last `run` as Chrome trace-event JSON (opens in Perfetto or
    /// `chrome://tracing`; one thread per core pipeline, injection port and DIP channel,
    /// times in microseconds). `"null"` before the first run.
    fn last_trace(&self) -> PyResult<String> {
        guarded(|| {
            // With the GIL held: releasing it while holding the lock could deadlock with `run`.
            let last = self.last_run.lock().unwrap_or_else(|p| p.into_inner());
            Ok(last.as_ref().map_or_else(|| "null".to_owned(), |r| r.profile.chrome_trace_json()))
        })
    }

    /// `(stage name, IR text)` for every pipeline stage, starting with `import`.
    fn stages(&self) -> Vec<(String, String)> {
        self.inner.stages.clone()
    }

    /// Seconds each stage took, parallel to `stages()` (empty for a graph from the cache).
    fn stage_seconds(&self) -> Vec<f64> {
        self.inner.stage_seconds.clone()
    }

    /// `(step, seconds)` of the compile: `import`, each pass, `verify+print`, `emit`,
    /// `validate` (empty for a graph from the cache).
    fn timings(&self) -> Vec<(String, f64)> {
        self.inner.timings.clone()
    }

    /// What the e-graph optimizer (`egraph-optimize`) did, as a JSON list with one object per
    /// function: `func`, `ops_before`, `ops_after`, `cost_before`, `cost_after` (seconds, the
    /// pass's cost model), `enodes`, `eclasses`, `iterations`, `stop_reason`, `extractor`,
    /// `seconds`, `saturation_seconds`, `dag_seconds`, `applied` (rule -> times applied).
    /// `"[]"` when the pass is off, and for a graph loaded from the compile cache.
    fn egraph_stats(&self) -> String {
        self.inner.egraph_stats_json()
    }

    /// The Program as JSON (byte-identical for identical graph and options); serialized on
    /// the first call, with the GIL released.
    fn program_json(&self, py: Python<'_>) -> String {
        py.detach(|| self.inner.program_json().to_string())
    }

    /// The target the Program was compiled for, as JSON.
    fn target_json(&self) -> String {
        self.inner.target_json()
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
    // Imported on the main thread after torch: the simulator may share torch's OpenMP
    // threads here, and knows a forked child from this process.
    dojo_runtime::init_threads();
    m.add_function(wrap_pyfunction!(compile_graph, m)?)?;
    m.add_function(wrap_pyfunction!(load_compiled, m)?)?;
    m.add_function(wrap_pyfunction!(unsupported_ops, m)?)?;
    m.add_function(wrap_pyfunction!(_panic_for_tests, m)?)?;
    m.add_function(wrap_pyfunction!(cfloat::cfloat_encode, m)?)?;
    m.add_function(wrap_pyfunction!(cfloat::cfloat_decode, m)?)?;
    m.add_function(wrap_pyfunction!(cfloat::cfloat_choose_bias, m)?)?;
    m.add_function(wrap_pyfunction!(cfloat::cfloat_limits, m)?)?;
    m.add_class::<CompiledGraph>()?;
    m.add("DojoError", py.get_type::<DojoError>())?;
    m.add("UnsupportedOpError", py.get_type::<UnsupportedOpError>())?;
    m.add("InvalidInputError", py.get_type::<InvalidInputError>())?;
    m.add("CapacityError", py.get_type::<CapacityError>())?;
    m.add("DeviceError", py.get_type::<DeviceError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
