//! The verifier: structural rules for every function (SSA order, types, returns) and the
//! dialect rules of `dojo.*` and `d1.*` ops. Every pass must leave IR that passes it; the pass
//! manager runs it between passes.

use crate::dialect::{self, verify_d1, verify_dojo};
use crate::ir::{Func, Module, Type};
use crate::layout::Layout;
use crate::parse::SourceMap;
use crate::print::ValueNames;
use std::fmt;

/// One verifier finding: which function and op (if any), and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyError {
    pub func: String,
    pub func_index: usize,
    pub op_index: Option<usize>,
    pub op_name: Option<String>,
    pub message: String,
    /// Filled in by [`locate`] when the module came from text.
    pub location: Option<(usize, usize)>,
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some((l, c)) = self.location {
            write!(f, "{l}:{c}: error: ")?;
        } else {
            write!(f, "error: ")?;
        }
        match (&self.op_name, self.op_index) {
            (Some(n), Some(i)) => write!(f, "'{n}' (op #{i} of @{}): {}", self.func, self.message),
            _ => write!(f, "@{}: {}", self.func, self.message),
        }
    }
}

/// Attach source locations to verifier errors of a parsed module.
pub fn locate(errors: &mut [VerifyError], map: &SourceMap) {
    for e in errors {
        e.location = match e.op_index {
            Some(i) => map.op(e.func_index, i),
            None => map.funcs.get(e.func_index).copied(),
        };
    }
}

/// Verify a module; all findings are returned, in order.
pub fn verify(module: &Module) -> Result<(), Vec<VerifyError>> {
    let mut errors = Vec::new();
    for (fi, func) in module.funcs.iter().enumerate() {
        verify_func(func, fi, &mut errors);
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

fn verify_func(func: &Func, fi: usize, errors: &mut Vec<VerifyError>) {
    let err = |op: Option<usize>, message: String| VerifyError {
        func: func.name.clone(),
        func_index: fi,
        op_index: op,
        op_name: op.and_then(|i| func.ops.get(i)).map(|o| o.name.clone()),
        message,
        location: None,
    };
    let names = ValueNames::new(func);
    let before = errors.len();
    for (i, t) in func.value_types.iter().enumerate() {
        if !matches!(t, Type::Tensor(_)) {
            errors.push(err(None, format!("value #{i} has type {t}; every value must be a tensor")));
        }
    }
    // SSA: results are numbered consecutively in op order, operands are defined earlier.
    let mut next = func.num_args as u32;
    let total = func.value_types.len() as u32;
    for (i, op) in func.ops.iter().enumerate() {
        if op.first_result.0 != next {
            errors.push(err(Some(i), "results are not numbered in op order".into()));
            return;
        }
        for v in &op.operands {
            if v.0 >= next {
                errors.push(err(Some(i), format!("operand {} is used before it is defined", names.get(*v))));
            }
        }
        next += op.num_results as u32;
        if next > total {
            errors.push(err(Some(i), "result has no type".into()));
            return;
        }
    }
    if next != total {
        errors.push(err(None, format!("{} value type(s) belong to no op", total - next)));
    }
    for v in &func.returns {
        if v.0 >= next {
            errors.push(err(None, format!("returned value {} is not defined", names.get(*v))));
        }
    }
    if errors.len() > before {
        return;
    }
    let ret_types: Vec<Type> = func.returns.iter().map(|v| func.ty(*v).clone()).collect();
    if ret_types != func.result_types {
        errors.push(err(None, "returned values do not match the declared result types".into()));
    }

    // Dialect rules. Mesh layouts are collected as we go (ops are in SSA order).
    let mut layouts: Vec<Option<Layout>> = vec![None; func.value_types.len()];
    let host = dialect::host_values(func);
    let mut any_d1 = false;
    for (i, op) in func.ops.iter().enumerate() {
        let result = match op.dialect() {
            "aten" | "prims" => Ok(()),
            "dojo" => verify_dojo(func, op),
            "d1" => {
                any_d1 = true;
                let r = verify_d1(func, op, &layouts);
                if op.name != "d1.store" {
                    if let Ok(l) = dialect::layout_of(op) {
                        for v in op.results() {
                            layouts[v.index()] = Some(l.clone());
                        }
                    }
                }
                r
            }
            other => Err(format!(
                "unknown dialect '{other}': function bodies hold aten.*, prims.*, dojo.* and d1.* ops"
            )),
        };
        if let Err(m) = result {
            errors.push(err(Some(i), m));
        }
    }
    if any_d1 {
        for v in &func.returns {
            if !host.get(v.index()).copied().unwrap_or(false) {
                errors.push(err(None, format!("returned value {} is on the mesh; d1.store it to the host first", names.get(*v))));
            }
        }
    }
}
