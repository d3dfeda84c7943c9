//! `precision{policy=<p> grads=<n>}`: the storage formats of a precision policy
//! (`../shared/specs/cfloat.md`). Every `dojo.matmul` whose operands are f32 gets each operand
//! through a `dojo.convert` to the policy's format; the product accumulates in f32 (D6) and
//! stays f32, and everything else (elementwise ops, reductions, normalisations, the loss)
//! computes in f32 as before.
//!
//! | policy     | forward operands | gradient operands (backward) |
//! |------------|------------------|------------------------------|
//! | `fp32`     | f32 (no change)  | f32                          |
//! | `bf16`     | bf16             | bf16                         |
//! | `cfloat16` | cf16_shp         | cf16_shp                     |
//! | `cfloat8`  | cf8_143          | cf8_152                      |
//!
//! An operand is a *gradient* when it depends on one of the function's last `grads`
//! arguments (AOTAutograd puts a backward graph's tangents last). Convolutions are matmuls
//! by then (`legalize-aten` lowers them the im2col way), so they are covered too.
//!
//! Each convert's result type carries the compile-time bias (the format's default, D7's
//! value for an all-zero tensor); the Program records one scale per converted tensor and the
//! run picks the real bias by D7 (see `driver`). Attributes of a convert: `tensor` (its
//! name for messages: the matmul's FX node and the operand, e.g. `mm_1.rhs`) and, when the
//! operand is a view (transpose, reshape, broadcast, slice) of argument `i`, `scale_input =
//! i`, so its bias can come from that input's values (weights) rather than from earlier
//! runs (activations and gradients). A tensor feeding several matmuls is converted once.

use dojo_compiler::{attr, Attr, CFloatFormat, ElemType, Func, Module, Pass, PassError, TensorType, Type, Value};
use std::collections::HashMap;

/// A precision policy (the `precision` compile option).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    Fp32,
    Bf16,
    CFloat16,
    CFloat8,
}

impl Policy {
    pub const NAMES: [&'static str; 4] = ["fp32", "bf16", "cfloat16", "cfloat8"];

    pub fn parse(name: &str) -> Result<Policy, String> {
        Ok(match name {
            "fp32" => Policy::Fp32,
            "bf16" => Policy::Bf16,
            "cfloat16" => Policy::CFloat16,
            "cfloat8" => Policy::CFloat8,
            other => return Err(format!("unknown precision '{other}'; expected one of {}", Policy::NAMES.join(", "))),
        })
    }

    /// The storage format of a matmul operand (None: stays f32).
    fn format(self, gradient: bool) -> Option<ElemType> {
        match self {
            Policy::Fp32 => None,
            Policy::Bf16 => Some(ElemType::BF16),
            Policy::CFloat16 => Some(ElemType::CFloat(CFloatFormat::Cf16Shp, 15)),
            Policy::CFloat8 if gradient => Some(ElemType::CFloat(CFloatFormat::Cf8_152, 15)),
            Policy::CFloat8 => Some(ElemType::CFloat(CFloatFormat::Cf8_143, 7)),
        }
    }
}

/// The runtime format and bias of a storage element type (bf16 or a CFloat), None otherwise.
pub fn storage_format(e: ElemType) -> Option<(dojo_runtime::Format, u8)> {
    use dojo_runtime::Format;
    match e {
        ElemType::BF16 => Some((Format::Bf16, 127)),
        ElemType::CFloat(f, bias) => Some((
            match f {
                CFloatFormat::Cf8_143 => Format::Cf8_143,
                CFloatFormat::Cf8_152 => Format::Cf8_152,
                CFloatFormat::Cf16Shp => Format::Cf16Shp,
                CFloatFormat::Cf16Uhp => Format::Cf16Uhp,
            },
            bias,
        )),
        _ => None,
    }
}

pub struct Precision {
    pub policy: Policy,
    /// The last `grads` arguments are gradients (a backward graph's tangents).
    pub grads: usize,
}

impl Pass for Precision {
    fn name(&self) -> &'static str {
        "precision"
    }

    fn run(&self, module: &mut Module) -> Result<(), PassError> {
        if self.policy == Policy::Fp32 {
            return Ok(());
        }
        for func in &mut module.funcs {
            if self.grads > func.num_args {
                return Err(PassError::Invalid(format!(
                    "precision: grads={} but @{} has {} arguments",
                    self.grads, func.name, func.num_args
                )));
            }
            *func = self.rewrite(func)?;
        }
        Ok(())
    }
}

/// Ops through which an operand is still a view of the same data (same amax or smaller).
const VIEWS: &[&str] = &["dojo.transpose", "dojo.reshape", "dojo.broadcast", "dojo.slice"];

impl Precision {
    fn rewrite(&self, src: &Func) -> Result<Func, PassError> {
        let n = src.value_types.len();
        // Which values depend on a gradient argument, and which are views of an argument.
        let mut grad = vec![false; n];
        let mut view_of: Vec<Option<usize>> = vec![None; n];
        for i in 0..src.num_args {
            grad[i] = i >= src.num_args - self.grads;
            view_of[i] = Some(i);
        }
        for op in &src.ops {
            let g = op.operands.iter().any(|v| grad[v.index()]);
            let view = if VIEWS.contains(&op.name.as_str()) { op.operands.first().and_then(|v| view_of[v.index()]) } else { None };
            for r in op.results() {
                grad[r.index()] = g;
                view_of[r.index()] = view;
            }
        }

        let mut out = Func::new(src.name.clone(), src.arg_types().to_vec());
        out.attrs = src.attrs.clone();
        let mut map: Vec<Value> = (0..src.num_args as u32).map(Value).collect();
        map.resize(n, Value(u32::MAX));
        let mut converted: HashMap<(Value, ElemType), Value> = HashMap::new();
        for op in &src.ops {
            let mut operands: Vec<Value> = op.operands.iter().map(|v| map[v.index()]).collect();
            if op.name == "dojo.matmul" {
                let node = op.attr("fx.node").and_then(Attr::as_str).map_or_else(|| format!("%{}", op.result(0).0), str::to_string);
                for (k, side) in ["lhs", "rhs"].into_iter().enumerate() {
                    let v = op.operands[k];
                    let Some(t) = src.tensor(v).filter(|t| t.elem == ElemType::F32) else { continue };
                    let Some(elem) = self.policy.format(grad[v.index()]) else { continue };
                    let key = (operands[k], elem);
                    let c = match converted.get(&key) {
                        Some(c) => *c,
                        None => {
                            let mut attrs = vec![attr("tensor", Attr::Str(format!("{node}.{side}")))];
                            if let Some(x) = op.attr("fx.node") {
                                attrs.push(("fx.node".to_string(), x.clone()));
                            }
                            if let Some(i) = view_of[v.index()] {
                                attrs.push(attr("scale_input", Attr::Int(i as i64)));
                            }
                            let c = out.push("dojo.convert", vec![operands[k]], attrs, vec![Type::Tensor(TensorType::new(t.shape.clone(), elem))]);
                            converted.insert(key, c);
                            c
                        }
                    };
                    operands[k] = c;
                }
            }
            let types: Vec<Type> = op.results().map(|r| src.ty(r).clone()).collect();
            let first = out.push(op.name.clone(), operands, op.attrs.clone(), types);
            for (i, r) in op.results().enumerate() {
                map[r.index()] = Value(first.0 + i as u32);
            }
        }
        let returns = src.returns.iter().map(|v| map[v.index()]).collect();
        out.set_returns(returns);
        Ok(out)
    }
}
