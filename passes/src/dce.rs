//! `dce`: remove ops whose results are never used. Every op in the three dialects is free of
//! side effects (functionalization removed mutation before capture), so this is always sound.

use dojo_compiler::{Module, Pass, PassError};

pub struct Dce;

impl Pass for Dce {
    fn name(&self) -> &'static str {
        "dce"
    }

    fn run(&self, module: &mut Module) -> Result<(), PassError> {
        for func in &mut module.funcs {
            // Walk backwards: an op is live if a later live op or the return uses a result.
            let mut live = vec![false; func.value_types.len()];
            for v in &func.returns {
                live[v.index()] = true;
            }
            let mut keep = vec![false; func.ops.len()];
            for (i, op) in func.ops.iter().enumerate().rev() {
                if op.results().any(|r| live[r.index()]) {
                    keep[i] = true;
                    for v in &op.operands {
                        live[v.index()] = true;
                    }
                }
            }
            if keep.iter().any(|k| !k) {
                func.retain_ops(|i, _| keep[i]);
            }
        }
        Ok(())
    }
}
