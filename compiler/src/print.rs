//! The text form: MLIR generic operation syntax, so `mlir-opt --allow-unregistered-dialect`
//! reads every dump. Arguments print as `%argN`, single results as `%N`, multi-result ops as
//! `%N:k` with uses `%N#i`. Attributes print sorted by name, as MLIR does.

use crate::ir::{Attr, ElemType, Func, Module, Op, Type, Value};
use std::fmt::{self, Write};

impl fmt::Display for ElemType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ElemType::CFloat(fmt_, bias) => write!(f, "!dojo.{}<{}>", fmt_.name(), bias),
            other => f.write_str(other.keyword().unwrap_or("?")),
        }
    }
}

impl fmt::Display for Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Type::Tensor(t) => {
                f.write_str("tensor<")?;
                for d in &t.shape {
                    write!(f, "{d}x")?;
                }
                write!(f, "{}>", t.elem)
            }
            Type::Elem(e) => write!(f, "{e}"),
            Type::Function(ins, outs) => {
                write_type_list(f, ins)?;
                f.write_str(" -> ")?;
                write_type_list(f, outs)
            }
        }
    }
}

fn write_type_list(f: &mut impl Write, types: &[Type]) -> fmt::Result {
    f.write_char('(')?;
    for (i, t) in types.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        write!(f, "{t}")?;
    }
    f.write_char(')')
}

/// A float literal MLIR accepts (it needs a '.'), exact for every finite f64; non-finite
/// values print as the hexadecimal bit pattern.
pub fn float_literal(v: f64) -> String {
    if !v.is_finite() {
        return format!("0x{:016X}", v.to_bits());
    }
    let s = format!("{v:?}");
    if s.contains('.') {
        return s;
    }
    match s.find('e') {
        Some(pos) => format!("{}.0{}", &s[..pos], &s[pos..]),
        None => format!("{s}.0"),
    }
}

fn write_string(f: &mut impl Write, s: &str) -> fmt::Result {
    f.write_char('"')?;
    for c in s.chars() {
        match c {
            '"' => f.write_str("\\\"")?,
            '\\' => f.write_str("\\\\")?,
            '\n' => f.write_str("\\n")?,
            '\t' => f.write_str("\\t")?,
            c if (c as u32) < 0x20 => write!(f, "\\{:02X}", c as u32)?,
            c => f.write_char(c)?,
        }
    }
    f.write_char('"')
}

impl fmt::Display for Attr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Attr::Int(v) => write!(f, "{v} : i64"),
            Attr::Float(v) => write!(f, "{} : f64", float_literal(*v)),
            Attr::Bool(v) => write!(f, "{v}"),
            Attr::Str(s) => write_string(f, s),
            Attr::Ints(v) => {
                f.write_str("array<i64")?;
                for (i, x) in v.iter().enumerate() {
                    f.write_str(if i == 0 { ": " } else { ", " })?;
                    write!(f, "{x}")?;
                }
                f.write_char('>')
            }
            Attr::Floats(v) => {
                f.write_str("array<f64")?;
                for (i, x) in v.iter().enumerate() {
                    f.write_str(if i == 0 { ": " } else { ", " })?;
                    f.write_str(&float_literal(*x))?;
                }
                f.write_char('>')
            }
            Attr::Array(v) => {
                f.write_char('[')?;
                for (i, x) in v.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{x}")?;
                }
                f.write_char(']')
            }
            Attr::Type(t) => write!(f, "{t}"),
            Attr::Dict(entries) => write_attr_dict(f, entries),
        }
    }
}

/// Attribute names that are not bare identifiers are quoted.
fn write_attr_name(f: &mut impl Write, name: &str) -> fmt::Result {
    let bare = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '$');
    if bare {
        f.write_str(name)
    } else {
        write_string(f, name)
    }
}

fn write_attr_dict(f: &mut impl Write, entries: &[(String, Attr)]) -> fmt::Result {
    let mut sorted: Vec<&(String, Attr)> = entries.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    f.write_char('{')?;
    for (i, (k, v)) in sorted.into_iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        write_attr_name(f, k)?;
        write!(f, " = {v}")?;
    }
    f.write_char('}')
}

/// Names of the values of one function as they are printed.
pub struct ValueNames {
    names: Vec<String>,
}

impl ValueNames {
    pub fn new(func: &Func) -> ValueNames {
        let mut names: Vec<String> = (0..func.num_args).map(|i| format!("%arg{i}")).collect();
        names.resize(func.value_types.len(), "%<invalid>".to_string());
        for (k, op) in func.ops.iter().enumerate() {
            for r in 0..op.num_results {
                let name =
                    if op.num_results == 1 { format!("%{k}") } else { format!("%{k}#{r}") };
                if let Some(slot) = names.get_mut(op.result(r).index()) {
                    *slot = name;
                }
            }
        }
        ValueNames { names }
    }

    pub fn get(&self, v: Value) -> &str {
        self.names.get(v.index()).map(String::as_str).unwrap_or("%<invalid>")
    }
}

fn write_op(out: &mut String, func: &Func, names: &ValueNames, index: usize, op: &Op) -> fmt::Result {
    out.push_str("    ");
    match op.num_results {
        0 => {}
        1 => write!(out, "%{index} = ")?,
        n => write!(out, "%{index}:{n} = ")?,
    }
    write_string(out, &op.name)?;
    out.push('(');
    for (i, v) in op.operands.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(names.get(*v));
    }
    out.push(')');
    if !op.attrs.is_empty() {
        out.push(' ');
        write_attr_dict(out, &op.attrs)?;
    }
    out.push_str(" : ");
    let ins: Vec<Type> = op.operands.iter().map(|v| value_type(func, *v)).collect();
    let outs: Vec<Type> = op.results().map(|v| value_type(func, v)).collect();
    write_type_list(out, &ins)?;
    out.push_str(" -> ");
    if outs.len() == 1 {
        write!(out, "{}", outs[0])?;
    } else {
        write_type_list(out, &outs)?;
    }
    out.push('\n');
    Ok(())
}

fn value_type(func: &Func, v: Value) -> Type {
    func.value_types.get(v.index()).cloned().unwrap_or(Type::Function(vec![], vec![]))
}

/// Print one function as a generic `func.func` op.
pub fn print_func(out: &mut String, func: &Func) -> fmt::Result {
    let names = ValueNames::new(func);
    let fty = Type::Function(func.arg_types().to_vec(), func.result_types.clone());
    out.push_str("  \"func.func\"() <{function_type = ");
    write!(out, "{fty}")?;
    out.push_str(", sym_name = ");
    write_string(out, &func.name)?;
    out.push_str("}> ({\n  ^bb0(");
    for (i, t) in func.arg_types().iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        write!(out, "%arg{i}: {t}")?;
    }
    out.push_str("):\n");
    for (i, op) in func.ops.iter().enumerate() {
        write_op(out, func, &names, i, op)?;
    }
    out.push_str("    \"func.return\"(");
    for (i, v) in func.returns.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(names.get(*v));
    }
    out.push_str(") : ");
    let rets: Vec<Type> = func.returns.iter().map(|v| value_type(func, *v)).collect();
    write_type_list(out, &rets)?;
    out.push_str(" -> ()\n  })");
    if !func.attrs.is_empty() {
        out.push(' ');
        write_attr_dict(out, &func.attrs)?;
    }
    out.push_str(" : () -> ()\n");
    Ok(())
}

/// Print a module in MLIR generic syntax.
pub fn print_module(m: &Module) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = write_module(&mut out, m);
    out
}

fn write_module(out: &mut String, m: &Module) -> fmt::Result {
    out.push_str("\"builtin.module\"() ({\n");
    if m.funcs.is_empty() {
        // MLIR needs the module's one block even when it is empty; its label says so.
        out.push_str("^bb0:\n");
    }
    for f in &m.funcs {
        print_func(out, f)?;
    }
    out.push_str("})");
    if !m.attrs.is_empty() {
        out.push(' ');
        write_attr_dict(out, &m.attrs)?;
    }
    out.push_str(" : () -> ()\n");
    Ok(())
}

impl fmt::Display for Module {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&print_module(self))
    }
}
