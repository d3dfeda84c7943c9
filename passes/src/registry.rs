//! The one registry of passes: every pass's stable name, what it does, and how its options
//! are read. `dojo-opt --pass-pipeline` and the compile driver both build pipelines here.

use crate::{dce::Dce, legalize::LegalizeAten, lower::LowerToD1};
use dojo_compiler::{parse_pipeline, Pass, PassManager, PassSpec};

/// `(name, summary, options)` of every registered pass.
pub const PASSES: &[(&str, &str, &str)] = &[
    ("legalize-aten", "rewrite imported aten.* ops into the graph-level dojo dialect", ""),
    ("dce", "remove ops whose results are unused", ""),
    ("lower-to-d1", "place dojo ops on a mesh of D1 cores (d1 dialect, explicit transfers)", "mesh=<preset> (default d1)"),
];

/// The pipeline the compile driver runs for a mesh.
pub fn default_pipeline(mesh: &str) -> String {
    format!("legalize-aten,dce,lower-to-d1{{mesh={mesh}}},dce")
}

/// Build one pass from its spec.
pub fn create(spec: &PassSpec) -> Result<Box<dyn Pass>, String> {
    let known: Vec<&str> = match spec.name.as_str() {
        "lower-to-d1" => vec!["mesh"],
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
        "legalize-aten" => Box::new(LegalizeAten),
        "dce" => Box::new(Dce),
        "lower-to-d1" => Box::new(LowerToD1 { mesh: spec.option("mesh").unwrap_or("d1").to_string() }),
        other => {
            let names: Vec<&str> = PASSES.iter().map(|p| p.0).collect();
            return Err(format!("unknown pass '{other}'; registered passes: {}", names.join(", ")));
        }
    })
}

/// Build a pass manager from a textual pipeline.
pub fn build_pipeline(text: &str) -> Result<PassManager, String> {
    let mut pm = PassManager::new();
    for spec in parse_pipeline(text)? {
        pm.add(create(&spec)?);
    }
    Ok(pm)
}
