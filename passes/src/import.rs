//! Import of a captured graph into `aten.*` IR.
//!
//! The Python side describes an AOTAutograd FX graph as JSON (see `python/torch_dojo/capture.py`):
//! inputs with shapes and dtypes, nodes with their overload, tensor operands, schema-named
//! attributes and output metadata, and the returned values (`null` where the graph returns
//! None). Each node becomes one op named by its overload (`aten.addmm.default`), with its
//! attributes under their schema names and the FX node name as `fx.node`.

use dojo_compiler::{attr, Attr, ElemType, Func, Module, TensorType, Type, Value};
use serde::Deserialize;
use std::collections::HashMap;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GraphDesc {
    pub name: String,
    pub inputs: Vec<InputDesc>,
    pub nodes: Vec<NodeDesc>,
    /// Returned value names; None where the graph returns None.
    pub outputs: Vec<Option<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputDesc {
    pub name: String,
    #[serde(flatten)]
    pub meta: TensorDesc,
}

#[derive(Debug, Deserialize, Clone)]
pub struct TensorDesc {
    pub shape: Vec<i64>,
    pub dtype: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeDesc {
    pub name: String,
    pub target: String,
    #[serde(default)]
    pub operands: Vec<String>,
    #[serde(default)]
    pub attrs: Vec<AttrDesc>,
    /// One entry per result; None for a result that is None (it gets no value).
    pub outputs: Vec<Option<TensorDesc>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttrDesc {
    pub name: String,
    pub kind: String,
    #[serde(default)]
    pub value: serde_json::Value,
}

/// The imported module and, for each graph output, whether it is None.
#[derive(Debug)]
pub struct Imported {
    pub module: Module,
    /// `outputs[i]` is `Some(k)` when graph output `i` is the function's `k`-th result.
    pub outputs: Vec<Option<usize>>,
    /// How many of the last inputs are gradients: AOTAutograd names a backward graph's
    /// incoming gradients `tangents_<n>` and passes them last.
    pub gradients: usize,
}

/// The element type for a capture dtype name.
pub fn elem_type(dtype: &str) -> Option<ElemType> {
    Some(match dtype {
        "f32" => ElemType::F32,
        "f64" => ElemType::F64,
        "f16" => ElemType::F16,
        "bf16" => ElemType::BF16,
        "bool" => ElemType::I1,
        "i8" => ElemType::I8,
        "i16" => ElemType::I16,
        "i32" => ElemType::I32,
        "i64" => ElemType::I64,
        _ => return None,
    })
}

fn tensor_type(t: &TensorDesc, what: &str) -> Result<Type, String> {
    let elem = elem_type(&t.dtype)
        .ok_or(format!("{what}: dtype '{}' is not supported by torch-dojo", t.dtype))?;
    let shape = t
        .shape
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| format!("{what}: negative dimension {d} in {:?}", t.shape)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Type::Tensor(TensorType::new(shape, elem)))
}

fn convert_attr(a: &AttrDesc, node: &str) -> Result<Option<Attr>, String> {
    use serde_json::Value as J;
    let bad = || format!("node '{node}': attribute '{}' of kind '{}' has value {}", a.name, a.kind, a.value);
    Ok(Some(match a.kind.as_str() {
        "none" => return Ok(None),
        "int" => Attr::Int(a.value.as_i64().ok_or_else(bad)?),
        "float" => match &a.value {
            J::Number(n) => Attr::Float(n.as_f64().ok_or_else(bad)?),
            // JSON has no inf/nan: the capture sends them as strings.
            J::String(s) => Attr::Float(match s.as_str() {
                "inf" => f64::INFINITY,
                "-inf" => f64::NEG_INFINITY,
                "nan" => f64::NAN,
                _ => return Err(bad()),
            }),
            _ => return Err(bad()),
        },
        "bool" => Attr::Bool(a.value.as_bool().ok_or_else(bad)?),
        "str" | "dtype" | "device" | "layout" | "memory_format" => {
            Attr::Str(a.value.as_str().ok_or_else(bad)?.to_string())
        }
        "ints" => Attr::Ints(
            a.value
                .as_array()
                .ok_or_else(bad)?
                .iter()
                .map(|v| v.as_i64().ok_or_else(bad))
                .collect::<Result<_, _>>()?,
        ),
        "bools" => Attr::Array(
            a.value
                .as_array()
                .ok_or_else(bad)?
                .iter()
                .map(|v| v.as_bool().map(Attr::Bool).ok_or_else(bad))
                .collect::<Result<_, _>>()?,
        ),
        "floats" => Attr::Floats(
            a.value
                .as_array()
                .ok_or_else(bad)?
                .iter()
                .map(|v| v.as_f64().ok_or_else(bad))
                .collect::<Result<_, _>>()?,
        ),
        other => return Err(format!("node '{node}': attribute '{}' has unknown kind '{other}'", a.name)),
    }))
}

/// Parse the JSON description and build the `aten.*` function.
pub fn import_graph(json: &str) -> Result<Imported, String> {
    let g: GraphDesc =
        serde_json::from_str(json).map_err(|e| format!("malformed graph description: {e}"))?;
    let arg_types = g
        .inputs
        .iter()
        .map(|i| tensor_type(&i.meta, &format!("input '{}'", i.name)))
        .collect::<Result<Vec<_>, _>>()?;
    let mut func = Func::new(g.name.clone(), arg_types);
    let mut names: HashMap<String, Value> = HashMap::new();
    for (i, inp) in g.inputs.iter().enumerate() {
        if names.insert(inp.name.clone(), func.arg(i)).is_some() {
            return Err(format!("input name '{}' is used twice", inp.name));
        }
    }
    for node in &g.nodes {
        let what = format!("node '{}' ({})", node.name, node.target);
        let operands = node
            .operands
            .iter()
            .map(|o| names.get(o).copied().ok_or(format!("{what}: operand '{o}' is not defined before it")))
            .collect::<Result<Vec<_>, _>>()?;
        let mut attrs = vec![attr("fx.node", Attr::Str(node.name.clone()))];
        for a in &node.attrs {
            if a.name == "fx.node" || attrs.iter().any(|(n, _)| *n == a.name) {
                return Err(format!("{what}: attribute '{}' is given twice", a.name));
            }
            if let Some(v) = convert_attr(a, &node.name)? {
                attrs.push((a.name.clone(), v));
            }
        }
        // Results that are None get no value; the others keep their index in their names.
        let present: Vec<usize> = (0..node.outputs.len()).filter(|&k| node.outputs[k].is_some()).collect();
        let types = node
            .outputs
            .iter()
            .enumerate()
            .filter_map(|(k, t)| t.as_ref().map(|t| tensor_type(t, &format!("{what} output {k}"))))
            .collect::<Result<Vec<_>, _>>()?;
        if types.is_empty() {
            return Err(format!("{what}: a node must produce at least one tensor"));
        }
        let op_name = if node.target.starts_with("aten.") || node.target.starts_with("prims.") {
            node.target.clone()
        } else {
            return Err(format!("{what}: only aten and prims ops can be imported, got '{}'", node.target));
        };
        let first = func.push(op_name, operands, attrs, types);
        let mut define = |name: String, v: Value| -> Result<(), String> {
            if names.insert(name.clone(), v).is_some() {
                return Err(format!("value name '{name}' is defined twice"));
            }
            Ok(())
        };
        // `node` names result 0; `node#k` names result k (the capture uses both forms, and
        // `#0` also for a list of one tensor).
        for (r, &k) in present.iter().enumerate() {
            let v = Value(first.0 + r as u32);
            if k == 0 {
                define(node.name.clone(), v)?;
            }
            define(format!("{}#{k}", node.name), v)?;
        }
    }
    let mut returns = Vec::new();
    let mut outputs = Vec::new();
    for o in &g.outputs {
        match o {
            None => outputs.push(None),
            Some(name) => {
                let v = names.get(name).copied().ok_or(format!("output '{name}' is not defined in the graph"))?;
                outputs.push(Some(returns.len()));
                returns.push(v);
            }
        }
    }
    func.set_returns(returns);
    let gradients = g.inputs.iter().rev().take_while(|i| i.name.starts_with("tangents")).count();
    Ok(Imported { module: Module { funcs: vec![func], attrs: vec![] }, outputs, gradients })
}
