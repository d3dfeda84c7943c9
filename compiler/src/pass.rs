//! Passes and the pass manager. A pass has one stable kebab-case name and transforms a module
//! in place; the manager runs a pipeline, verifies after every pass, and can keep the IR after
//! each one (for `--print-ir-after-all`, dumps and tests). The registry that maps names to
//! passes lives with the passes themselves (`dojo-passes`).

use crate::ir::Module;
use crate::print::print_module;
use crate::verify::{verify, VerifyError};
use std::fmt;
use std::time::{Duration, Instant};

/// An op the pipeline cannot handle, as the user wrote it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnsupportedOp {
    /// The op name, e.g. `aten.cumsum.default`.
    pub target: String,
    /// Where it came from (FX node name, or `@func op #i`).
    pub node: String,
    /// Operand types, e.g. `(tensor<4x4xf32>)`.
    pub operands: String,
}

/// Why a pass failed.
#[derive(Clone, Debug, PartialEq)]
pub enum PassError {
    /// Ops that this pass cannot transform; all of them, not only the first.
    Unsupported(Vec<UnsupportedOp>),
    /// The input is not valid for this pass (bad attribute, bad option).
    Invalid(String),
    /// The program does not fit the target (SRAM, cores).
    Capacity(String),
    /// The pass produced IR the verifier rejects: a compiler bug.
    Verify { pass: String, errors: Vec<VerifyError> },
}

impl fmt::Display for PassError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PassError::Unsupported(ops) => {
                write!(f, "{} unsupported op(s):", ops.len())?;
                for op in ops {
                    write!(f, "\n  {} (node `{}`) on {}", op.target, op.node, op.operands)?;
                }
                Ok(())
            }
            PassError::Invalid(m) | PassError::Capacity(m) => f.write_str(m),
            PassError::Verify { pass, errors } => {
                write!(f, "internal error: pass '{pass}' produced invalid IR (please report):")?;
                for e in errors {
                    write!(f, "\n  {e}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for PassError {}

/// A transformation of a module.
pub trait Pass {
    /// The stable kebab-case name used in pipelines.
    fn name(&self) -> &'static str;
    fn run(&self, module: &mut Module) -> Result<(), PassError>;
}

/// One entry of a textual pipeline: `name` or `name{key=value key2=value2}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PassSpec {
    pub name: String,
    pub options: Vec<(String, String)>,
}

impl PassSpec {
    pub fn option(&self, key: &str) -> Option<&str> {
        self.options.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// Parse `a,b{k=v},c` (MLIR's textual pipeline form; a `builtin.module(...)` wrapper is
/// accepted too).
pub fn parse_pipeline(text: &str) -> Result<Vec<PassSpec>, String> {
    let mut s = text.trim();
    if let Some(inner) = s.strip_prefix("builtin.module(").and_then(|r| r.strip_suffix(')')) {
        s = inner.trim();
    }
    let mut out = Vec::new();
    if s.is_empty() {
        return Ok(out);
    }
    let mut rest = s;
    while !rest.is_empty() {
        let end = rest.find([',', '{']).unwrap_or(rest.len());
        let name = rest[..end].trim();
        if name.is_empty()
            || !name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            return Err(format!("bad pass name '{name}' in pipeline '{text}'"));
        }
        let mut options = Vec::new();
        rest = &rest[end..];
        if let Some(after) = rest.strip_prefix('{') {
            let close = after.find('}').ok_or(format!("unclosed '{{' after pass '{name}'"))?;
            for kv in after[..close].split_whitespace() {
                let (k, v) = kv.split_once('=').ok_or(format!("pass option '{kv}' of '{name}' must be key=value"))?;
                options.push((k.to_string(), v.to_string()));
            }
            rest = &after[close + 1..];
        }
        out.push(PassSpec { name: name.to_string(), options });
        rest = rest.trim_start();
        if let Some(r) = rest.strip_prefix(',') {
            rest = r.trim_start();
            if rest.is_empty() {
                return Err(format!("pipeline '{text}' ends with ','"));
            }
        } else if !rest.is_empty() {
            return Err(format!("expected ',' between passes in '{text}'"));
        }
    }
    Ok(out)
}

/// What happened in one pass.
#[derive(Clone, Debug)]
pub struct PassRecord {
    pub name: String,
    pub time: Duration,
    /// The IR after the pass, when the manager keeps it.
    pub ir: Option<String>,
}

/// Runs passes in order with the verifier between them.
#[derive(Default)]
pub struct PassManager {
    passes: Vec<Box<dyn Pass>>,
    keep_ir: bool,
}

impl PassManager {
    pub fn new() -> PassManager {
        PassManager::default()
    }

    pub fn add(&mut self, pass: Box<dyn Pass>) -> &mut Self {
        self.passes.push(pass);
        self
    }

    /// Keep the printed IR after every pass in the records.
    pub fn keep_ir(&mut self, keep: bool) -> &mut Self {
        self.keep_ir = keep;
        self
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.passes.iter().map(|p| p.name()).collect()
    }

    /// Run every pass; stop at the first failure. Records cover the passes that ran.
    pub fn run(&self, module: &mut Module) -> (Vec<PassRecord>, Result<(), PassError>) {
        let mut records = Vec::new();
        for pass in &self.passes {
            let start = Instant::now();
            let result = pass.run(module);
            let time = start.elapsed();
            if let Err(e) = result {
                records.push(PassRecord { name: pass.name().to_string(), time, ir: None });
                return (records, Err(e));
            }
            if let Err(errors) = verify(module) {
                records.push(PassRecord { name: pass.name().to_string(), time, ir: None });
                return (records, Err(PassError::Verify { pass: pass.name().to_string(), errors }));
            }
            let ir = self.keep_ir.then(|| print_module(module));
            records.push(PassRecord { name: pass.name().to_string(), time, ir });
        }
        (records, Ok(()))
    }
}
