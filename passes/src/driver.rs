//! The compile driver: captured graph (JSON) + options → verified IR at every stage → Program,
//! and execution of a compiled Program on the simulated mesh. This is the whole surface the
//! Python extension uses.

use crate::emit::emit_program;
use crate::import::import_graph;
use crate::precision::Policy;
use crate::egraph::Stats as EgraphStats;
use crate::registry::{build_pipeline, build_pipeline_recording, default_pipeline};
use dojo_compiler::{attr, print_module, verify, Attr, PassError};
use dojo_runtime::program::DType;
use dojo_runtime::sim::{Profile, ScaleProfile, SimMesh};
use dojo_runtime::{Program, ValidProgram};
use std::sync::Arc;
use serde::Deserialize;
use std::fmt;

/// One tensor handed to or returned from a compiled graph, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    pub shape: Vec<usize>,
    /// `"f32"`, `"bool"` or `"i64"`: the dtype the value has in the graph. The data is always f32
    /// (bools as 0.0/1.0); the caller converts.
    pub dtype: String,
    pub data: Vec<f32>,
}

/// An aten op the compiler cannot run yet, as the user wrote it.
#[derive(Debug, Clone, PartialEq)]
pub struct UnsupportedOp {
    /// The overload, e.g. `aten.cumsum.default`.
    pub target: String,
    /// The FX node name, e.g. `cumsum_1`.
    pub node: String,
    /// Operand shapes and dtypes, e.g. `[f32[32, 64]]`.
    pub operands: String,
}

/// Every error the compiler or runtime can report to a user. `kind()` names the Python
/// exception class the extension raises.
#[derive(Debug, Clone, PartialEq)]
pub enum DojoError {
    /// The graph uses ops the compiler cannot run; all of them are listed at once.
    Unsupported(Vec<UnsupportedOp>),
    /// Malformed input: bad graph description, IR text with a diagnostic, bad options.
    Invalid(String),
    /// The graph is valid but does not fit the target (SRAM, core count).
    Capacity(String),
    /// The Program failed while executing on the device.
    Runtime(String),
}

impl DojoError {
    pub fn kind(&self) -> &'static str {
        match self {
            DojoError::Unsupported(_) => "UnsupportedOpError",
            DojoError::Invalid(_) => "InvalidInputError",
            DojoError::Capacity(_) => "CapacityError",
            DojoError::Runtime(_) => "DeviceError",
        }
    }
}

impl fmt::Display for DojoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DojoError::Unsupported(ops) => {
                writeln!(f, "torch-dojo cannot run {} op(s) of this graph yet:", ops.len())?;
                for op in ops {
                    writeln!(f, "  {} (node `{}`) on {}", op.target, op.node, op.operands)?;
                }
                write!(f, "Remove or replace these ops, or run this part of the model eagerly.")
            }
            DojoError::Invalid(m) | DojoError::Capacity(m) | DojoError::Runtime(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for DojoError {}

/// A compiled graph: the Program and the IR after each stage.
#[derive(Debug, Clone)]
pub struct CompiledGraph {
    /// `(stage name, IR text)` in pipeline order, starting with `import`.
    pub stages: Vec<(String, String)>,
    /// Seconds each stage took, parallel to `stages` (empty for a graph loaded from a cache).
    pub stage_seconds: Vec<f64>,
    /// The dtypes of the outputs, in order.
    pub output_dtypes: Vec<String>,
    /// Peak SRAM bytes over all cores, from the Program's static check.
    pub peak_sram_bytes: u64,
    /// Wall seconds of every step of the compile, in order: `import`, each pass (as in
    /// `stage_seconds`), `verify+print` (the verifier after every pass and the IR text kept
    /// per stage), `emit`, `validate` (the Program's static check). Empty for a graph loaded
    /// from a cache. (The Program's JSON is made when first asked for: [`Self::program_json`].)
    pub timings: Vec<(String, f64)>,
    /// What `egraph-optimize` did, one entry per function, when the pass ran (empty when it is
    /// off and for a graph loaded from a cache). [`CompiledGraph::egraph_stats_json`] as data.
    pub egraph_stats: Vec<EgraphStats>,
    program: ValidProgram,
    /// The Profile of every run, made by the first (the timing never depends on the values:
    /// later runs only compute them).
    profile: std::sync::OnceLock<Timing>,
    /// The Program as JSON, made on first use (most graphs run without anyone reading it; a
    /// cache write does it off the compile's critical path).
    json: std::sync::OnceLock<String>,
    /// Per scale of the Program, the amax of its last runs (delayed scaling).
    history: std::sync::Arc<std::sync::Mutex<Vec<Vec<f32>>>>,
}

/// Runs of amax history a bias is chosen from (the largest of them, D7 with margin 1).
pub const AMAX_HISTORY: usize = 16;

/// The Profile of a graph's runs, and its summary as JSON (without the timeline).
#[derive(Debug, Clone)]
struct Timing {
    profile: Arc<Profile>,
    summary: Arc<serde_json::Value>,
}

impl Timing {
    fn new(mut profile: Profile) -> Result<Timing, DojoError> {
        profile.numerics.clear();
        let timeline = std::mem::take(&mut profile.timeline);
        let mut summary = serde_json::to_value(&profile)
            .map_err(|e| DojoError::Runtime(format!("cannot serialize the profile: {e}")))?;
        profile.timeline = timeline;
        if let Some(obj) = summary.as_object_mut() {
            obj.remove("timeline");
        }
        Ok(Timing { profile: Arc::new(profile), summary: Arc::new(summary) })
    }
}

/// The result of one execution.
#[derive(Debug, Clone)]
pub struct RunResult {
    pub outputs: Vec<HostTensor>,
    /// The simulator's profile, timeline included (`profile.chrome_trace_json()` gives a
    /// trace): the same for every run of the graph, so shared; its `numerics` are empty.
    pub profile: Arc<Profile>,
    /// What this run's conversions to storage formats saw (the Profile's `numerics`).
    pub numerics: Vec<ScaleProfile>,
    /// `profile` as JSON without its timeline (and numerics).
    summary: Arc<serde_json::Value>,
}

impl RunResult {
    /// The profile as JSON (simulated time, cores used, SRAM, traffic, this run's numerics),
    /// without the per-operation timeline.
    pub fn profile_json(&self) -> Result<String, DojoError> {
        let failed = |e: serde_json::Error| DojoError::Runtime(format!("cannot serialize the profile: {e}"));
        let mut summary = serde_json::Value::clone(&self.summary);
        if let Some(obj) = summary.as_object_mut() {
            obj.insert("numerics".into(), serde_json::to_value(&self.numerics).map_err(failed)?);
        }
        Ok(summary.to_string())
    }
    /// This run's numerics as JSON (a list, one object per storage-format tensor).
    pub fn numerics_json(&self) -> String {
        serde_json::to_string(&self.numerics).unwrap_or_else(|_| "[]".to_owned())
    }
}

/// Compile options; the Python side checks the key set, this checks the values.
#[derive(Debug, Deserialize)]
struct Options {
    #[serde(default = "default_mesh")]
    mesh: String,
    #[serde(default = "default_precision")]
    precision: String,
    /// `egraph-optimize`: `false` (default), `true`, or its settings: limits `{"iters", "nodes",
    /// "time_ms"}`, `"epilogues": false` (matmul epilogue fusion, on by default) and
    /// `"winograd": false` (Winograd F(2x2, 3x3) for 3x3 convolutions, on by default with
    /// `fp32`, off under a precision policy unless set).
    #[serde(default)]
    egraph: EgraphOption,
    /// `lower-to-d1`'s plan: `default`, or `naive` (the baseline of issue 5).
    #[serde(default = "default_plan")]
    plan: String,
    /// `auto` (default): on a multi-chip mesh with the default plan, a graph that keeps its
    /// samples apart runs data-parallel over the chips (`split-batch`); `none`: never.
    #[serde(default = "default_parallel")]
    parallel: String,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum EgraphOption {
    On(bool),
    Limits(std::collections::BTreeMap<String, serde_json::Value>),
}

impl Default for EgraphOption {
    fn default() -> EgraphOption {
        EgraphOption::On(false)
    }
}

impl EgraphOption {
    /// The pass options for `default_pipeline`, or None when the pass is off. Under a
    /// precision policy (`low_precision`) `winograd` is off unless set: its transformed tiles
    /// and weights would be rounded to the storage format, adding to the format's own error.
    fn pass_options(&self, low_precision: bool) -> Result<Option<String>, DojoError> {
        let winograd_off = if low_precision { "winograd=false" } else { "" };
        match self {
            EgraphOption::On(on) => Ok(on.then(|| winograd_off.to_string())),
            EgraphOption::Limits(limits) => {
                let mut opts = Vec::new();
                for (k, v) in limits {
                    let valid = match k.as_str() {
                        "iters" | "nodes" | "time_ms" => v.is_u64(),
                        "epilogues" | "winograd" => v.is_boolean(),
                        _ => return Err(DojoError::Invalid(format!("option 'egraph' has no setting '{k}'; settings: iters, nodes, time_ms (whole numbers), epilogues, winograd (true/false)"))),
                    };
                    if !valid {
                        return Err(DojoError::Invalid(format!("option 'egraph': '{k}' must be {}, got {v}", if matches!(k.as_str(), "epilogues" | "winograd") { "true or false" } else { "a whole number" })));
                    }
                    opts.push(format!("{k}={v}"));
                }
                if !limits.contains_key("winograd") && !winograd_off.is_empty() {
                    opts.push(winograd_off.to_string());
                }
                Ok(Some(opts.join(" ")))
            }
        }
    }
}

fn default_mesh() -> String {
    "d1".into()
}

fn default_precision() -> String {
    "fp32".into()
}

fn default_plan() -> String {
    "default".into()
}

fn default_parallel() -> String {
    "auto".into()
}

fn pass_error(e: PassError) -> DojoError {
    match e {
        PassError::Unsupported(ops) => DojoError::Unsupported(
            ops.into_iter()
                .map(|o| UnsupportedOp { target: o.target, node: o.node, operands: o.operands })
                .collect(),
        ),
        PassError::Invalid(m) => DojoError::Invalid(m),
        PassError::Capacity(m) => DojoError::Capacity(m),
        e @ PassError::Verify { .. } => DojoError::Invalid(e.to_string()),
    }
}

fn dtype_name(d: DType) -> &'static str {
    match d {
        DType::F32 => "f32",
        DType::Bool => "bool",
        DType::I64 => "i64",
        DType::I32 => "i32",
        DType::BF16 => "bf16",
        DType::Cf8_143 => "cf8_143",
        DType::Cf8_152 => "cf8_152",
        DType::Cf16Shp => "cf16_shp",
        DType::Cf16Uhp => "cf16_uhp",
    }
}

/// Compile a captured graph (the JSON the Python capture produces) with options (a JSON object).
pub fn compile_graph(graph_json: &str, options_json: &str) -> Result<CompiledGraph, DojoError> {
    let options: Options = serde_json::from_str(options_json)
        .map_err(|e| DojoError::Invalid(format!("bad compile options {options_json}: {e}")))?;
    Policy::parse(&options.precision).map_err(|e| DojoError::Invalid(format!("option 'precision': {e}")))?;
    crate::lower::Plan::parse(&options.plan).map_err(|e| DojoError::Invalid(format!("option 'plan': {e}")))?;
    if !["auto", "none"].contains(&options.parallel.as_str()) {
        return Err(DojoError::Invalid(format!("option 'parallel' must be 'auto' or 'none', got '{}'", options.parallel)));
    }
    // Check the mesh name before any work, for a clear message.
    let target = dojo_runtime::Target::preset(&options.mesh).map_err(|e| DojoError::Invalid(e.to_string()))?;
    let split = options.parallel == "auto" && options.plan == "default" && target.chip_grid != (1, 1);
    match compile_module(graph_json, &options, split, None) {
        // Data parallelism that does not fit a chip (GPT-2's 50257-word embedding table, a
        // part's working set): each op spread over the chips instead, and the functions'
        // `dojo.split` attribute says why.
        Err(DojoError::Capacity(m)) if split => compile_module(graph_json, &options, false, Some(&m)),
        other => other,
    }
}

/// [`compile_graph`] with `split-batch` on or off (`unsplit`: why it is off, for the
/// functions' `dojo.split` attribute).
fn compile_module(graph_json: &str, options: &Options, split: bool, unsplit: Option<&str>) -> Result<CompiledGraph, DojoError> {
    let mut laps = Laps::start();
    let imported = import_graph(graph_json).map_err(DojoError::Invalid)?;
    let mut module = imported.module;
    if let Some(why) = unsplit {
        for f in &mut module.funcs {
            f.attrs.push(attr("dojo.split", Attr::Str(format!("not split: the split graph does not fit: {why}"))));
        }
    }
    if let Err(errors) = verify(&module) {
        let lines: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        return Err(DojoError::Invalid(format!("captured graph is not valid IR:\n{}", lines.join("\n"))));
    }
    let mut stages = vec![("import".to_string(), print_module(&module))];
    let mut stage_seconds = vec![laps.lap("import")];
    let egraph = options.egraph.pass_options(options.precision != "fp32")?;
    let precision = (options.precision != "fp32").then(|| format!("policy={} grads={}", options.precision, imported.gradients));
    let (mut pm, egraph_record) =
        build_pipeline_recording(&default_pipeline(&options.mesh, egraph.as_deref(), precision.as_deref(), &options.plan, split)).map_err(DojoError::Invalid)?;
    pm.keep_ir(true);
    let (records, result) = pm.run(&mut module);
    result.map_err(pass_error)?;
    let egraph_stats = std::mem::take(&mut *egraph_record.lock().unwrap_or_else(|p| p.into_inner()));
    let pipeline_s = laps.lap("pipeline");
    laps.timings.pop();
    let mut passes_s = 0.0;
    for r in records {
        let s = r.time.as_secs_f64();
        passes_s += s;
        laps.timings.push((r.name.clone(), s));
        stage_seconds.push(s);
        stages.push((r.name, r.ir.unwrap_or_default()));
    }
    laps.timings.push(("verify+print".to_string(), (pipeline_s - passes_s).max(0.0)));
    let program = emit_program(&module, None).map_err(pass_error)?;
    laps.lap("emit");
    let program = ValidProgram::new(program).map_err(|e| DojoError::Capacity(e.to_string()))?;
    laps.lap("validate");
    let peak_sram_bytes = program.stats().peak_sram_per_core.iter().map(|(_, b)| *b).max().unwrap_or(0);
    Ok(CompiledGraph {
        stages,
        stage_seconds,
        json: Default::default(),
        output_dtypes: program.program().outputs.iter().map(|o| dtype_name(o.dtype).to_string()).collect(),
        peak_sram_bytes,
        history: Default::default(),
        timings: laps.timings,
        egraph_stats,
        program,
        profile: Default::default(),
    })
}

/// Wall time of consecutive compile steps.
struct Laps {
    clock: std::time::Instant,
    timings: Vec<(String, f64)>,
}

impl Laps {
    fn start() -> Laps {
        Laps { clock: std::time::Instant::now(), timings: Vec::new() }
    }

    /// Records the time since the previous lap under `what`; returns it in seconds.
    fn lap(&mut self, what: &str) -> f64 {
        let now = std::time::Instant::now();
        let s = (now - self.clock).as_secs_f64();
        self.timings.push((what.to_string(), s));
        self.clock = now;
        s
    }
}

/// The ops of a captured graph that the compiler cannot run (empty when it can run all of
/// them). Callers partition the graph on this: supported parts compile, the rest stays eager.
pub fn unsupported_ops(graph_json: &str) -> Result<Vec<UnsupportedOp>, DojoError> {
    let mut module = import_graph(graph_json).map_err(DojoError::Invalid)?.module;
    let mut pm = build_pipeline("legalize-aten").map_err(DojoError::Invalid)?;
    pm.keep_ir(false);
    match pm.run(&mut module).1 {
        Ok(()) => Ok(Vec::new()),
        Err(e) => match pass_error(e) {
            DojoError::Unsupported(ops) => Ok(ops),
            other => Err(other),
        },
    }
}

impl CompiledGraph {
    /// The Program as JSON (byte-identical for identical input and options), serialized on
    /// the first call.
    pub fn program_json(&self) -> &str {
        self.json.get_or_init(|| self.program().to_json())
    }

    /// The target description as JSON (what a report needs, without the whole Program).
    pub fn target_json(&self) -> String {
        serde_json::to_string(&self.program().target).unwrap_or_default()
    }

    /// Rebuild a compiled graph from a Program saved earlier (e.g. a compile cache entry) and
    /// its stages. The Program is parsed and validated: a corrupt or truncated entry is an
    /// `Invalid` error, never a graph that runs.
    pub fn from_saved(program_json: &str, stages: Vec<(String, String)>) -> Result<CompiledGraph, DojoError> {
        let program = Program::from_json(program_json).map_err(|e| DojoError::Invalid(format!("saved Program: {e}")))?;
        let program = ValidProgram::new(program).map_err(|e| DojoError::Invalid(format!("saved Program: {e}")))?;
        let peak_sram_bytes = program.stats().peak_sram_per_core.iter().map(|(_, b)| *b).max().unwrap_or(0);
        Ok(CompiledGraph {
            stages,
            stage_seconds: Vec::new(),
            // The saved text itself: it came from `to_json`, and re-serialising costs as much
            // as parsing.
            json: std::sync::OnceLock::from(program_json.to_string()),
            output_dtypes: program.program().outputs.iter().map(|o| dtype_name(o.dtype).to_string()).collect(),
            peak_sram_bytes,
            history: Default::default(),
            timings: Vec::new(),
            egraph_stats: Vec::new(),
            program,
            profile: Default::default(),
        })
    }

    /// The Program this graph compiled to.
    pub fn program(&self) -> &Program {
        self.program.program()
    }

    /// [`CompiledGraph::egraph_stats`] as a JSON list, one object per function: `func`,
    /// `ops_before`, `ops_after`, `cost_before`, `cost_after` (seconds, the pass's cost model),
    /// `enodes`, `eclasses`, `iterations`, `stop_reason`, `extractor`, `seconds`,
    /// `saturation_seconds`, `dag_seconds`, `applied` (rule name -> times applied).
    pub fn egraph_stats_json(&self) -> String {
        let list: Vec<serde_json::Value> = self
            .egraph_stats
            .iter()
            .map(|s| {
                serde_json::json!({
                    "func": s.func,
                    "ops_before": s.ops_before,
                    "ops_after": s.ops_after,
                    "cost_before": s.cost_before,
                    "cost_after": s.cost_after,
                    "enodes": s.enodes,
                    "eclasses": s.eclasses,
                    "iterations": s.iterations,
                    "stop_reason": s.stop_reason,
                    "extractor": s.extractor,
                    "seconds": s.seconds,
                    "saturation_seconds": s.saturation_seconds,
                    "dag_seconds": s.dag_seconds,
                    "applied": s.applied,
                })
            })
            .collect();
        serde_json::Value::Array(list).to_string()
    }

    /// The bias of every scale for a run on `inputs` (D7, margin 1): a view of an input (a
    /// weight) from that input's amax now; any other tensor (activations, gradients) from
    /// the largest amax of its last [`AMAX_HISTORY`] runs. Before the first run there is no
    /// history: a calibration run (converts pass values through, recording amaxes) fills it.
    fn biases(&self, inputs: &[(&[usize], &[f32])], seed: u64) -> Result<Vec<u8>, DojoError> {
        let scales = &self.program().scales;
        let calibrate = {
            let history = self.history.lock().unwrap_or_else(|p| p.into_inner());
            history.len() != scales.len() || scales.iter().zip(history.iter()).any(|(sc, h)| sc.input.is_none() && h.is_empty())
        };
        if calibrate {
            let biases = scales.iter().map(|sc| sc.bias).collect();
            let (_, numerics) = SimMesh::new()
                .with_seed(seed)
                .with_scale_biases(biases)
                .calibrating()
                .values(&self.program, inputs)
                .map_err(|e| DojoError::Runtime(e.to_string()))?;
            self.record_amax(&numerics);
        }
        let history = self.history.lock().unwrap_or_else(|p| p.into_inner());
        let mut biases = Vec::with_capacity(scales.len());
        for (k, sc) in scales.iter().enumerate() {
            let amax = match sc.input {
                Some(i) => inputs.get(i).map_or(0.0, |(_, data)| dojo_runtime::cfloat::amax(data)),
                None => history.get(k).map_or(0.0, |h| h.iter().copied().fold(0.0, f32::max)),
            };
            let format = sc.dtype.storage_format().ok_or_else(|| DojoError::Runtime(format!("scale {} is not a storage format", sc.name)))?;
            let bias = dojo_runtime::cfloat::choose_bias(format, amax, 1.0)
                .map_err(|e| DojoError::Runtime(format!("tensor {}: {e}", sc.name)))?;
            biases.push(bias);
        }
        Ok(biases)
    }

    /// Appends a run's amax per scale to the history (keeping the last [`AMAX_HISTORY`]).
    fn record_amax(&self, numerics: &[ScaleProfile]) {
        let mut history = self.history.lock().unwrap_or_else(|p| p.into_inner());
        history.resize(numerics.len(), Vec::new());
        for (h, n) in history.iter_mut().zip(numerics) {
            if h.len() == AMAX_HISTORY {
                h.remove(0);
            }
            h.push(n.amax);
        }
    }

    /// Whether the Program draws random numbers (dropout): then each run should get a fresh
    /// seed ([`CompiledGraph::run_seeded`]).
    pub fn uses_random(&self) -> bool {
        self.program().instrs.iter().any(|i| matches!(i, dojo_runtime::Instr::Kernel { op: dojo_runtime::KernelOp::Random { .. }, .. }))
    }

    /// Execute on the simulated mesh. Inputs are `(shape, data)` in the graph's input order.
    pub fn run(&self, inputs: &[(&[usize], &[f32])]) -> Result<RunResult, DojoError> {
        self.run_seeded(inputs, 0)
    }

    /// [`CompiledGraph::run`] with `seed` for the Program's random numbers.
    pub fn run_seeded(&self, inputs: &[(&[usize], &[f32])], seed: u64) -> Result<RunResult, DojoError> {
        let mut device = SimMesh::new().with_seed(seed);
        if !self.program().scales.is_empty() {
            device = device.with_scale_biases(self.biases(inputs, seed)?);
        }
        let failed = |e: dojo_runtime::RuntimeError| DojoError::Runtime(e.to_string());
        let (outputs, numerics, timing) = match self.profile.get() {
            Some(timing) => {
                let (outputs, numerics) = device.values(&self.program, inputs).map_err(failed)?;
                (outputs, numerics, timing.clone())
            }
            None => {
                // The first run times the Program beside computing the values.
                let (values, profile) = rayon::join(|| device.values(&self.program, inputs), || device.profile(&self.program));
                let (outputs, numerics) = values.map_err(failed)?;
                let timing = Timing::new(profile)?;
                (outputs, numerics, self.profile.get_or_init(|| timing).clone())
            }
        };
        self.record_amax(&numerics);
        let outputs = outputs
            .into_iter()
            .zip(&self.output_dtypes)
            .map(|(t, d)| HostTensor { shape: t.shape, dtype: d.clone(), data: t.data })
            .collect();
        Ok(RunResult { outputs, profile: timing.profile, numerics, summary: timing.summary })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A transpose, relu and the transpose back: `egraph-optimize` removes both transposes.
    const TRANSPOSES: &str = r#"{"name": "g", "inputs": [{"name": "x", "shape": [16, 32], "dtype": "f32"}],
        "nodes": [
          {"name": "t0", "target": "aten.permute.default", "operands": ["x"], "attrs": [{"name": "dims", "kind": "ints", "value": [1, 0]}], "outputs": [{"shape": [32, 16], "dtype": "f32"}]},
          {"name": "r", "target": "aten.relu.default", "operands": ["t0"], "outputs": [{"shape": [32, 16], "dtype": "f32"}]},
          {"name": "t1", "target": "aten.permute.default", "operands": ["r"], "attrs": [{"name": "dims", "kind": "ints", "value": [1, 0]}], "outputs": [{"shape": [16, 32], "dtype": "f32"}]}
        ],
        "outputs": ["t1"]}"#;

    /// The compiled graph carries the pass's statistics (none when the pass is off).
    #[test]
    fn egraph_stats_reach_the_compiled_graph() {
        let off = compile_graph(TRANSPOSES, "{}").expect("compiles");
        assert!(off.egraph_stats.is_empty());
        assert_eq!(off.egraph_stats_json(), "[]");
        let on = compile_graph(TRANSPOSES, r#"{"egraph": true}"#).expect("compiles");
        assert_eq!(on.egraph_stats.len(), 1, "one function");
        let s = &on.egraph_stats[0];
        assert!(s.ops_after < s.ops_before, "{s}");
        assert!(s.cost_after < s.cost_before, "{s}");
        assert!(s.enodes > 0 && s.eclasses > 0 && s.iterations > 0, "{s}");
        let json: serde_json::Value = serde_json::from_str(&on.egraph_stats_json()).expect("JSON");
        assert_eq!(json[0]["ops_before"], s.ops_before);
        assert_eq!(json[0]["stop_reason"], s.stop_reason.as_str());
        assert!(json[0]["applied"].as_object().is_some_and(|a| !a.is_empty()), "{json}");
    }
    /// An embedding lookup with a `words x 1024` f32 table and ids `[batch, len]`.
    fn embedding_graph(words: usize, batch: usize, len: usize) -> String {
        format!(
            r#"{{"name": "g", "inputs": [{{"name": "w", "shape": [{words}, 1024], "dtype": "f32"}}, {{"name": "ids", "shape": [{batch}, {len}], "dtype": "i64"}}],
            "nodes": [{{"name": "e", "target": "aten.embedding.default", "operands": ["w", "ids"], "outputs": [{{"shape": [{batch}, {len}, 1024], "dtype": "f32"}}]}}],
            "outputs": ["e"]}}"#
        )
    }

    /// On a tile, a graph that splits runs data-parallel over its chips, each part on a block
    /// of chips when there are few parts (2: 2 x 5 chips each); a lookup in a table larger than
    /// a chip holds (160 MB) runs once over the whole tile; when a part does not fit its chip
    /// (13 parts, one chip each, each sample's 328 MB of embeddings), the graph compiles
    /// unsplit instead and says why.
    #[test]
    fn data_parallel_falls_back_to_one_piece_when_a_part_does_not_fit_its_chip() {
        let stage = |g: &CompiledGraph, name: &str| g.stages.iter().find(|(n, _)| n == name).map(|(_, ir)| ir.clone());
        let split_note = |g: &CompiledGraph, note: &str| stage(g, "split-batch").map(|ir| ir.contains(&format!(r#"dojo.split = "{note}""#)));
        let small = compile_graph(&embedding_graph(100, 2, 4), r#"{"mesh": "tile"}"#).expect("compiles");
        assert_eq!(split_note(&small, "2 part(s) of a batch of 2, 2 x 5 chips each"), Some(true));
        let big = compile_graph(&embedding_graph(40_000, 2, 4), r#"{"mesh": "tile"}"#).expect("compiles split");
        assert_eq!(split_note(&big, "2 part(s) of a batch of 2, 2 x 5 chips each"), Some(true));
        let once = stage(&big, "split-batch").expect("split");
        assert!(once.contains("(tensor<40000x1024xf32>, tensor<2x4xi64>) -> tensor<2x4x1024xf32>"), "{once}");
        // A part's 328 MB spread over its 10 chips.
        let spread = compile_graph(&embedding_graph(100, 2, 80_000), r#"{"mesh": "tile"}"#).expect("compiles split");
        assert_eq!(split_note(&spread, "2 part(s) of a batch of 2, 2 x 5 chips each"), Some(true));
        let long = compile_graph(&embedding_graph(100, 13, 80_000), r#"{"mesh": "tile"}"#).expect("compiles unsplit");
        assert_eq!(stage(&long, "split-batch"), None);
        // The functions say why they are whole.
        let last = &long.stages.last().expect("stages").1;
        assert!(last.contains(r#"dojo.split = "not split: the split graph does not fit: "#), "{}", &last[last.len().saturating_sub(600)..]);
        let none = compile_graph(&embedding_graph(100, 2, 4), r#"{"mesh": "tile", "parallel": "none"}"#).expect("compiles");
        assert_eq!(stage(&none, "split-batch"), None);
        assert!(matches!(compile_graph(&embedding_graph(100, 2, 4), r#"{"parallel": "model"}"#), Err(DojoError::Invalid(m)) if m.contains("'parallel'")));
    }

    /// Runs of a graph share one Profile (timed at the first run, equal to a full execute's)
    /// and report their own numerics.
    #[test]
    fn runs_share_the_profile_and_keep_their_own_numerics() {
        const MM: &str = r#"{"name": "g", "inputs": [{"name": "a", "shape": [8, 16], "dtype": "f32"}, {"name": "b", "shape": [16, 8], "dtype": "f32"}],
            "nodes": [{"name": "c", "target": "aten.mm.default", "operands": ["a", "b"], "outputs": [{"shape": [8, 8], "dtype": "f32"}]}],
            "outputs": ["c"]}"#;
        let g = compile_graph(MM, r#"{"precision": "cfloat8"}"#).expect("compiles");
        let a: Vec<f32> = (0..128).map(|i| (i % 7) as f32 - 3.0).collect();
        let twice: Vec<f32> = a.iter().map(|x| 2.0 * x).collect();
        let run = |x: &[f32]| g.run(&[(&[8, 16], x), (&[16, 8], &a)]).expect("runs");
        let (r1, r2) = (run(&a), run(&twice));
        assert!(Arc::ptr_eq(&r1.profile, &r2.profile));
        let (_, mut full) = dojo_runtime::Device::execute(&mut SimMesh::new(), g.program(), &[(&[8, 16], &a), (&[16, 8], &a)]).expect("runs");
        full.numerics.clear();
        assert_eq!(*r1.profile, full);
        let amax = |r: &RunResult| r.numerics.iter().map(|n| n.amax).fold(0.0, f32::max);
        assert_eq!((amax(&r1), amax(&r2)), (3.0, 6.0));
        let json = |r: &RunResult| serde_json::from_str::<serde_json::Value>(&r.profile_json().expect("JSON")).expect("parses");
        let (j1, j2) = (json(&r1), json(&r2));
        assert_eq!(j1["numerics"], serde_json::from_str::<serde_json::Value>(&r1.numerics_json()).expect("parses"));
        assert_ne!(j1["numerics"], j2["numerics"]);
        assert_eq!(j1["simulated_seconds"], j2["simulated_seconds"]);
        assert!(j1.get("timeline").is_none() && j1["ops"].is_array());
    }
}
