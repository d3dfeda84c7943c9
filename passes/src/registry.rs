//! The one registry of passes: every pass's stable name, what it does, and how its options
//! are read. `dojo-opt --pass-pipeline` and the compile driver both build pipelines here.

use crate::precision::{Policy, Precision};
use crate::egraph::{EgraphOptimize, StatsRecord};
use crate::{dce::Dce, legalize::LegalizeAten, lower::LowerToD1};
use dojo_compiler::{parse_pipeline, Pass, PassManager, PassSpec};

/// `(name, summary, options)` of every registered pass.
pub const PASSES: &[(&str, &str, &str)] = &[
    (
        "split-batch",
        "data parallelism: copy a graph whose ops keep samples apart once per chip, each on a slice of the batch (before legalize-aten)",
        "mesh=<preset> (d1) parts=<n> (the fewest parts giving each chip the smallest share of the batch)",
    ),
    (
        "legalize-aten",
        "rewrite imported aten.* ops into the graph-level dojo dialect",
        "input-grads=scatter|gather (scatter: a convolution's input gradient places each tap's product in the padded input; gather: a plain one is the forward convolution of the padded output gradient with the flipped kernel, which egraph-optimize's winograd finds)",
    ),
    ("dce", "remove ops whose results are unused", ""),
    (
        "egraph-optimize",
        "equality saturation over dojo ops, extracted with the mesh cost model",
        "iters=<n> (40) nodes=<n> (20000) time_ms=<n> (1000) mesh=<preset> (d1, for the cost model) stats=<bool> (false: one line per function on stderr) epilogues=<bool> (true: fuse-epilogue, elementwise ops with a bias-sized operand into matmul kernels)",
    ),
    (
        "precision",
        "convert matmul operands to the storage format of a precision policy (f32 accumulation)",
        "policy=fp32|bf16|cfloat16|cfloat8 (fp32) grads=<n> (0: the last n arguments are gradients, cf8_152 under cfloat8)",
    ),
    ("lower-to-d1", "place dojo ops on a mesh of D1 cores (d1 dialect, explicit transfers)", "mesh=<preset> (default d1) plan=default|naive (default: the naive baseline row-splits every result over all cores)"),
];

/// The pipeline the compile driver runs for a mesh. `egraph` adds `egraph-optimize` after
/// legalization, with these extra options (`""` for its defaults, e.g. `"iters=5"`);
/// `precision` adds the `precision` pass before lowering, with its options (e.g.
/// `"policy=cfloat8 grads=1"`); `plan` is `lower-to-d1`'s plan (`"default"` or `"naive"`);
/// `split` starts with `split-batch` (data parallelism over the mesh's chips).
pub fn default_pipeline(mesh: &str, egraph: Option<&str>, precision: Option<&str>, plan: &str, split: bool) -> String {
    // Input gradients gathered as convolutions where the e-graph may run them as Winograd;
    // not in graphs `split-batch` cuts into parts: there the e-graph stops at its node limit
    // after two iterations, and resnet18's training backward (8 x 112 x 112 on `tile`, the
    // pass on) took 474.3 us scattered, 475.5 us gathered with Winograd.
    let winograd = !split && egraph.is_some_and(|o| !o.split_whitespace().any(|kv| kv == "winograd=false"));
    let legalize = if winograd { "legalize-aten{input-grads=gather}" } else { "legalize-aten" };
    let mut passes = vec![legalize.to_string(), "dce".to_string()];
    if split {
        passes.insert(0, format!("split-batch{{mesh={mesh}}}"));
    }
    if let Some(opts) = egraph {
        let opts = if opts.is_empty() { String::new() } else { format!(" {opts}") };
        passes.push(format!("egraph-optimize{{mesh={mesh}{opts}}}"));
    }
    if let Some(opts) = precision {
        passes.push(format!("precision{{{opts}}}"));
    }
    let plan = if plan == "default" { String::new() } else { format!(" plan={plan}") };
    passes.push(format!("lower-to-d1{{mesh={mesh}{plan}}}"));
    passes.push("dce".to_string());
    passes.join(",")
}

/// Build one pass from its spec.
pub fn create(spec: &PassSpec) -> Result<Box<dyn Pass>, String> {
    create_recording(spec, None)
}

/// [`create`], with `egraph-optimize` appending each function's statistics to `egraph_stats`.
fn create_recording(spec: &PassSpec, egraph_stats: Option<&StatsRecord>) -> Result<Box<dyn Pass>, String> {
    let known: Vec<&str> = match spec.name.as_str() {
        "lower-to-d1" => vec!["mesh", "plan"],
        "legalize-aten" => vec!["input-grads"],
        "egraph-optimize" => vec!["iters", "nodes", "time_ms", "mesh", "stats", "epilogues", "winograd"],
        "precision" => vec!["policy", "grads"],
        "split-batch" => vec!["mesh", "parts"],
        _ => vec![],
    };
    for (k, _) in &spec.options {
        if !known.contains(&k.as_str()) {
            return Err(format!(
                "pass '{}' has no option '{k}'{}",
                spec.name,
                if known.is_empty() { String::new() } else { format!(" (options: {})", known.join(", ")) }
            ));
        }
    }
    Ok(match spec.name.as_str() {
        "legalize-aten" => {
            let gather_input_grads = match spec.option("input-grads").unwrap_or("scatter") {
                "scatter" => false,
                "gather" => true,
                v => return Err(format!("legalize-aten option input-grads={v}: expected scatter or gather")),
            };
            Box::new(LegalizeAten { gather_input_grads })
        }
        "dce" => Box::new(Dce),
        "split-batch" => {
            let parts = match spec.option("parts") {
                None => None,
                Some(v) => Some(v.parse().map_err(|_| format!("split-batch option parts={v}: expected a whole number"))?),
            };
            Box::new(crate::split::SplitBatch { mesh: spec.option("mesh").unwrap_or("d1").to_string(), parts })
        }
        "precision" => {
            let policy = Policy::parse(spec.option("policy").unwrap_or("fp32")).map_err(|e| format!("precision option policy: {e}"))?;
            let grads = match spec.option("grads") {
                None => 0,
                Some(v) => v.parse().map_err(|_| format!("precision option grads={v}: expected a whole number"))?,
            };
            Box::new(Precision { policy, grads })
        }
        "lower-to-d1" => {
            let plan = crate::lower::Plan::parse(spec.option("plan").unwrap_or("default")).map_err(|e| format!("lower-to-d1 option plan: {e}"))?;
            Box::new(LowerToD1 { mesh: spec.option("mesh").unwrap_or("d1").to_string(), plan })
        }
        "egraph-optimize" => {
            let num = |k: &str, default: usize| -> Result<usize, String> {
                spec.option(k).map_or(Ok(default), |v| v.parse().map_err(|_| format!("egraph-optimize option {k}={v}: expected a whole number")))
            };
            let d = crate::egraph::Limits::default();
            let limits = crate::egraph::Limits {
                iters: num("iters", d.iters)?,
                nodes: num("nodes", d.nodes)?,
                time: std::time::Duration::from_millis(num("time_ms", d.time.as_millis() as usize)? as u64),
            };
            // A true/false option and its default.
            let switch = |k: &str, default: bool| -> Result<bool, String> {
                match spec.option(k) {
                    None => Ok(default),
                    Some("true") | Some("1") => Ok(true),
                    Some("false") | Some("0") => Ok(false),
                    Some(v) => Err(format!("egraph-optimize option {k}={v}: expected true or false")),
                }
            };
            let (stats, epilogues, winograd) = (switch("stats", false)?, switch("epilogues", true)?, switch("winograd", true)?);
            Box::new(EgraphOptimize { mesh: spec.option("mesh").unwrap_or("d1").to_string(), limits, stats, epilogues, winograd, record: egraph_stats.cloned() })
        }
        other => {
            let names: Vec<&str> = PASSES.iter().map(|p| p.0).collect();
            return Err(format!("unknown pass '{other}'; registered passes: {}", names.join(", ")));
        }
    })
}

/// Build a pass manager from a textual pipeline.
pub fn build_pipeline(text: &str) -> Result<PassManager, String> {
    build(text, None)
}

/// [`build_pipeline`], plus where every `egraph-optimize` pass of it records its statistics
/// (one entry per function optimised, in run order; empty until the pipeline runs).
pub fn build_pipeline_recording(text: &str) -> Result<(PassManager, StatsRecord), String> {
    let record = StatsRecord::default();
    Ok((build(text, Some(&record))?, record))
}

fn build(text: &str, egraph_stats: Option<&StatsRecord>) -> Result<PassManager, String> {
    let mut pm = PassManager::new();
    for spec in parse_pipeline(text)? {
        pm.add(create_recording(&spec, egraph_stats)?);
    }
    Ok(pm)
}
