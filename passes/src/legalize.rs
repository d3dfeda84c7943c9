//! `legalize-aten`: rewrite imported `aten.*` ops into the graph-level `dojo` dialect.
//!
//! One function per overload family, each a few lines; PyTorch's type promotion is taken from
//! the captured result types (converts are inserted where an operand's type differs). Ops the
//! compiler cannot run are all collected and reported together, each with its FX node and
//! operand types. Only f32 and bool tensors are accepted for now: other dtypes would be
//! computed in f32 and could silently differ from eager, so they are reported as unsupported.

use dojo_compiler::{attr, Attr, ElemType, Func, Module, Op, Pass, PassError, TensorType, Type, UnsupportedOp, Value};

mod nn;

pub struct LegalizeAten {
    /// Write the input gradient of a convolution that Winograd may run (`Conv::input_grad_conv`)
    /// as the forward convolution it is, gathering its taps, rather than scattering each
    /// tap's product into the padded input (option `input-grads=gather`). The driver sets it
    /// when `egraph-optimize` may use Winograd, which then finds the taps (`default_pipeline`);
    /// without Winograd the gathered form was slower (two 3x3 convolutions' backward on `d1`,
    /// the pass off, scattered -> gathered: 64 channels at 56 x 56 99.5 -> 117.4 us, 128 at
    /// 28 x 28 75.0 -> 85.0 us).
    pub gather_input_grads: bool,
}

impl Pass for LegalizeAten {
    fn name(&self) -> &'static str {
        "legalize-aten"
    }

    fn run(&self, module: &mut Module) -> Result<(), PassError> {
        let mut unsupported = Vec::new();
        for func in &mut module.funcs {
            let mut lx = Lx::new(func, self.gather_input_grads);
            for (i, op) in func.ops.iter().enumerate() {
                if op.dialect() != "aten" && op.dialect() != "prims" {
                    lx.copy_op(op);
                    continue;
                }
                let first = lx.out.ops.len();
                match lx.legalize(op) {
                    Ok(results) => {
                        // Matmuls keep the FX node they came from: the precision pass names
                        // the tensors it converts after it.
                        if let Some(node) = op.attr("fx.node") {
                            for m in lx.out.ops[first..].iter_mut().filter(|m| m.name == "dojo.matmul") {
                                m.attrs.push(("fx.node".to_string(), node.clone()));
                                m.attrs.sort_by(|a, b| a.0.cmp(&b.0));
                            }
                        }
                        for (k, v) in results.into_iter().enumerate() {
                            lx.map[op.result(k).index()] = Some(v);
                        }
                    }
                    Err(reason) => {
                        unsupported.push(describe_unsupported(func, i, op, &reason));
                        // Keep going so that every unsupported op is reported at once.
                        lx.copy_op(op);
                    }
                }
            }
            if unsupported.is_empty() {
                *func = lx.finish();
            }
        }
        if unsupported.is_empty() {
            Ok(())
        } else {
            Err(PassError::Unsupported(unsupported))
        }
    }
}

/// A Python number attribute (bools are 0 and 1, as in PyTorch's type promotion).
fn number(a: &Attr) -> Option<f64> {
    a.as_float().or(a.as_bool().map(|b| if b { 1.0 } else { 0.0 }))
}

/// `f32[32, 64]` for messages.
pub fn short_type(t: &Type) -> String {
    match t {
        Type::Tensor(t) => {
            let dt = match t.elem {
                ElemType::I1 => "bool".to_string(),
                e => e.to_string(),
            };
            let dims: Vec<String> = t.shape.iter().map(|d| d.to_string()).collect();
            format!("{dt}[{}]", dims.join(", "))
        }
        other => other.to_string(),
    }
}

fn describe_unsupported(func: &Func, index: usize, op: &Op, reason: &str) -> UnsupportedOp {
    let node = op
        .attr("fx.node")
        .and_then(Attr::as_str)
        .map(str::to_string)
        .unwrap_or(format!("@{} op #{index}", func.name));
    let ins: Vec<String> = op.operands.iter().map(|v| short_type(func.ty(*v))).collect();
    let outs: Vec<String> = op.results().map(|v| short_type(func.ty(v))).collect();
    let mut operands = format!("({}) -> ({})", ins.join(", "), outs.join(", "));
    if !reason.is_empty() {
        operands.push_str(&format!(": {reason}"));
    }
    UnsupportedOp { target: op.name.clone(), node, operands }
}

/// The rewriter state: the new function and where each old value went.
struct Lx<'a> {
    src: &'a Func,
    out: Func,
    map: Vec<Option<Value>>,
    /// Whether each source value is read by an op or returned.
    used: Vec<bool>,
    /// Random ops legalized so far (each gets its own stream).
    streams: i64,
    /// [`LegalizeAten::gather_input_grads`].
    gather_input_grads: bool,
}

type LResult = Result<Vec<Value>, String>;

fn supported_elem(e: ElemType) -> bool {
    matches!(e, ElemType::F32 | ElemType::I1 | ElemType::I64 | ElemType::I32)
}

/// Integer element types (carried as f32 on the simulated mesh, exact below 2^24).
fn is_int(e: ElemType) -> bool {
    matches!(e, ElemType::I64 | ElemType::I32)
}

/// Op families whose int64 results are exact when computed on integers carried as f32 (the
/// simulator checks at run time that every int64 value stays below 2^24). Anything else
/// producing int64 (division, sums, cumulative ops, float -> int casts) is not accepted.
const EXACT_INT_OPS: &[&str] = &[
    "add", "sub", "mul", "neg", "abs", "maximum", "minimum", "where", "clamp", "clamp_min", "clamp_max",
    "view", "_unsafe_view", "reshape", "squeeze", "unsqueeze", "expand", "permute", "t", "transpose", "numpy_T",
    "alias", "detach", "clone", "lift_fresh_copy", "_to_copy", "contiguous", "slice", "select", "cat",
    "split", "split_with_sizes", "full", "full_like", "zeros_like", "ones_like", "scalar_tensor",
    "constant_pad_nd", "slice_backward", "slice_scatter", "select_backward", "arange", "max_pool2d_with_indices",
    "embedding", "index", "gather", "argmax", "cumsum",
];

impl<'a> Lx<'a> {
    fn new(src: &'a Func, gather_input_grads: bool) -> Lx<'a> {
        let mut out = Func::new(src.name.clone(), src.arg_types().to_vec());
        out.attrs = src.attrs.clone();
        let mut map = vec![None; src.value_types.len()];
        for a in src.args() {
            map[a.index()] = Some(a);
        }
        let mut used = vec![false; src.value_types.len()];
        for v in src.ops.iter().flat_map(|op| op.operands.iter()).chain(&src.returns) {
            used[v.index()] = true;
        }
        Lx { src, out, map, used, streams: 0, gather_input_grads }
    }

    fn finish(mut self) -> Func {
        let rets: Vec<Value> = self.src.returns.iter().map(|v| self.v(*v)).collect();
        self.out.set_returns(rets);
        self.out
    }

    fn v(&self, old: Value) -> Value {
        self.map[old.index()].unwrap_or(old)
    }

    fn copy_op(&mut self, op: &Op) {
        let operands = op.operands.iter().map(|v| self.v(*v)).collect();
        let types = op.results().map(|r| self.src.ty(r).clone()).collect();
        let first = self.out.push(op.name.clone(), operands, op.attrs.clone(), types);
        for k in 0..op.num_results {
            self.map[op.result(k).index()] = Some(Value(first.0 + k as u32));
        }
    }

    fn t(&self, v: Value) -> TensorType {
        match self.out.ty(v) {
            Type::Tensor(t) => t.clone(),
            _ => TensorType::new(vec![], ElemType::F32),
        }
    }

    fn emit(&mut self, name: &str, operands: Vec<Value>, attrs: Vec<(String, Attr)>, ty: TensorType) -> Value {
        self.out.push(format!("dojo.{name}"), operands, attrs, vec![Type::Tensor(ty)])
    }

    fn constant(&mut self, value: f64, elem: ElemType) -> Value {
        self.emit("constant", vec![], vec![attr("value", Attr::Float(value))], TensorType::new(vec![], elem))
    }

    fn convert(&mut self, v: Value, elem: ElemType) -> Value {
        let t = self.t(v);
        if t.elem == elem {
            return v;
        }
        self.emit("convert", vec![v], vec![], TensorType::new(t.shape, elem))
    }

    fn unary(&mut self, name: &str, x: Value) -> Value {
        let t = self.t(x);
        self.emit(name, vec![x], vec![], t)
    }

    /// Elementwise binary op producing `elem`, operands converted to it.
    fn binary(&mut self, name: &str, a: Value, b: Value, elem: ElemType) -> Result<Value, String> {
        let (a, b) = (self.convert(a, elem), self.convert(b, elem));
        let shape = dojo_compiler::dialect::broadcast_shapes(&[&self.t(a).shape, &self.t(b).shape])?;
        Ok(self.emit(name, vec![a, b], vec![], TensorType::new(shape, elem)))
    }

    fn compare(&mut self, pred: &str, a: Value, b: Value) -> Result<Value, String> {
        let (ea, eb) = (self.t(a).elem, self.t(b).elem);
        let (a, b) = if ea == eb { (a, b) } else { (self.convert(a, ElemType::F32), self.convert(b, ElemType::F32)) };
        let shape = dojo_compiler::dialect::broadcast_shapes(&[&self.t(a).shape, &self.t(b).shape])?;
        Ok(self.emit(
            "cmp",
            vec![a, b],
            vec![attr("predicate", Attr::Str(pred.into()))],
            TensorType::new(shape, ElemType::I1),
        ))
    }

    fn select(&mut self, c: Value, a: Value, b: Value, elem: ElemType) -> Result<Value, String> {
        let c = self.convert(c, ElemType::I1);
        let (a, b) = (self.convert(a, elem), self.convert(b, elem));
        let shape = dojo_compiler::dialect::broadcast_shapes(&[&self.t(c).shape, &self.t(a).shape, &self.t(b).shape])?;
        Ok(self.emit("select", vec![c, a, b], vec![], TensorType::new(shape, elem)))
    }

    /// `reduce_sum`/`reduce_max` over `dims` with the result type `out`.
    fn reduce(&mut self, kind: &str, x: Value, dims: &[i64], keepdim: bool, out: &TensorType) -> Result<Value, String> {
        let mut sorted = dims.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        let elem = self.t(x).elem;
        Ok(self.emit(
            kind,
            vec![x],
            vec![attr("dims", Attr::Ints(sorted)), attr("keepdim", Attr::Bool(keepdim))],
            TensorType::new(out.shape.clone(), elem),
        ))
    }

    fn reshape(&mut self, x: Value, ty: &TensorType) -> Value {
        if self.t(x).shape == ty.shape {
            return x;
        }
        let elem = self.t(x).elem;
        self.emit("reshape", vec![x], vec![], TensorType::new(ty.shape.clone(), elem))
    }

    fn legalize(&mut self, op: &Op) -> LResult {
        // Types first: everything this compiler runs is f32 or bool, with no empty dims.
        for v in op.operands.iter().copied().chain(op.results()) {
            let is_result = v.index() >= op.result(0).index();
            match self.src.ty(v) {
                // An empty result nobody reads (batch norm's saved statistics in inference).
                Type::Tensor(t)
                    if t.shape.contains(&0)
                        && is_result
                        && !self.used[v.index()]
                        && op.name == "aten._native_batch_norm_legit_no_training.default" => {}
                Type::Tensor(t) if t.shape.contains(&0) => {
                    return Err(format!("{} has no elements; empty tensors stay on the host", short_type(self.src.ty(v))))
                }
                Type::Tensor(t) if supported_elem(t.elem) => {}
                t => return Err(format!("dtype of {} is not supported yet (f32 and bool are)", short_type(t))),
            }
        }
        if op.dialect() == "prims" {
            return Err(String::new());
        }
        let name = op.name.strip_prefix("aten.").unwrap_or(&op.name).to_string();
        let (base, overload) = name.rsplit_once('.').unwrap_or((&name, "default"));
        let int_result = op.results().any(|v| self.src.tensor(v).is_some_and(|t| is_int(t.elem)));
        if int_result {
            if !EXACT_INT_OPS.contains(&base) {
                return Err("int64 results are supported only for exact integer ops (add, sub, mul, min/max, shape ops)".into());
            }
            let from_float = op.operands.iter().any(|v| self.src.tensor(*v).is_some_and(|t| t.elem == ElemType::F32));
            let fractional = op.attrs.iter().any(|(_, a)| matches!(a, Attr::Float(x) if x.fract() != 0.0));
            if (from_float && !matches!(base, "max_pool2d_with_indices" | "argmax")) || fractional {
                return Err("a float -> int64 conversion (truncation) is not supported yet".into());
            }
        }
        let mapped: Vec<Value> = op.operands.iter().map(|v| self.v(*v)).collect();
        let x = |i: usize| mapped.get(i).copied().ok_or(format!("missing operand #{i}"));
        // Tensor arguments by schema name, in order: a Python number passed for a Tensor
        // argument arrives as an attribute of that name and becomes a constant of `elem`.
        let tensor_args = |s: &mut Self, names: &[&str], elem: ElemType| -> Result<Vec<Value>, String> {
            let mut next = 0;
            let mut out = Vec::with_capacity(names.len());
            for n in names {
                match op.attr(n).and_then(number) {
                    Some(c) => out.push(s.constant(c, elem)),
                    None => {
                        out.push(x(next)?);
                        next += 1;
                    }
                }
            }
            if next != mapped.len() {
                return Err(format!("expected {next} tensor operand(s), got {}", mapped.len()));
            }
            Ok(out)
        };
        let res: Vec<TensorType> = op.results().filter_map(|v| self.src.tensor(v).cloned()).collect();
        let out = res.first().cloned().ok_or("op has no tensor result")?;
        let float_attr = |n: &str, default: Option<f64>| -> Result<f64, String> {
            match op.attr(n) {
                Some(a) => number(a).ok_or(format!("attribute '{n}' must be a number")),
                None => default.ok_or(format!("missing attribute '{n}'")),
            }
        };
        let ints_attr = |n: &str| -> Result<Vec<i64>, String> {
            op.attr(n).and_then(Attr::as_ints).map(<[i64]>::to_vec).ok_or(format!("missing attribute '{n}'"))
        };
        let rank = |v: Value, s: &Self| s.t(v).rank() as i64;
        let norm = |d: i64, r: i64| -> Result<i64, String> {
            let n = if d < 0 { d + r.max(1) } else { d };
            if n < 0 || n >= r.max(1) {
                return Err(format!("dim {d} is out of range for rank {r}"));
            }
            Ok(n)
        };
        // A reduction's dims (`dim`: one int, a list, or none/empty for all) and keepdim. A
        // rank-0 tensor reduces nothing (torch accepts dim 0 / -1 there).
        let reduction = |r: i64| -> Result<(Vec<i64>, bool), String> {
            let dims: Vec<i64> = match op.attr("dim") {
                _ if r == 0 => Vec::new(),
                Some(Attr::Int(d)) => vec![norm(*d, r)?],
                Some(Attr::Ints(d)) if !d.is_empty() => d.iter().map(|&d| norm(d, r)).collect::<Result<_, _>>()?,
                _ => (0..r).collect(),
            };
            Ok((dims, op.attr("keepdim").and_then(Attr::as_bool).unwrap_or(false)))
        };

        match (base, overload) {
            // x.permute(dims) -> transpose
            ("permute", "default") => {
                let a = x(0)?;
                let r = rank(a, self);
                let perm = ints_attr("dims")?.iter().map(|&d| norm(d, r)).collect::<Result<Vec<_>, _>>()?;
                Ok(vec![self.emit("transpose", vec![a], vec![attr("perm", Attr::Ints(perm))], out)])
            }
            // x.t() / x.transpose(d0, d1) -> transpose swapping two dims
            ("t", "default") | ("transpose", "int") | ("numpy_T", "default") => {
                let a = x(0)?;
                let r = rank(a, self);
                if r < 2 {
                    return Ok(vec![a]);
                }
                let (d0, d1) = if base == "transpose" {
                    (norm(float_attr("dim0", None)? as i64, r)?, norm(float_attr("dim1", None)? as i64, r)?)
                } else {
                    (0, 1)
                };
                let mut perm: Vec<i64> = (0..r).collect();
                perm.swap(d0 as usize, d1 as usize);
                Ok(vec![self.emit("transpose", vec![a], vec![attr("perm", Attr::Ints(perm))], out)])
            }
            // mm(a, b) -> matmul
            ("mm", "default") => Ok(vec![self.emit("matmul", vec![x(0)?, x(1)?], vec![], out)]),
            // addmm(bias, a, b, beta, alpha) -> beta*bias + alpha*(a@b)
            ("addmm", "default") => {
                let (bias, a, b) = (x(0)?, x(1)?, x(2)?);
                let (beta, alpha) = (float_attr("beta", Some(1.0))?, float_attr("alpha", Some(1.0))?);
                let mut prod = self.emit("matmul", vec![a, b], vec![], out.clone());
                if alpha != 1.0 {
                    let c = self.constant(alpha, out.elem);
                    prod = self.binary("mul", prod, c, out.elem)?;
                }
                if beta == 0.0 {
                    return Ok(vec![prod]);
                }
                let mut bias = bias;
                if beta != 1.0 {
                    let c = self.constant(beta, out.elem);
                    bias = self.binary("mul", bias, c, out.elem)?;
                }
                Ok(vec![self.binary("add", prod, bias, out.elem)?])
            }
            // unary elementwise, same name in both dialects
            (u, "default") if dojo_compiler::dialect::UNARY.contains(&u) => {
                let a = self.convert(x(0)?, out.elem);
                Ok(vec![self.unary(u, a)])
            }
            // a + alpha*b, a - alpha*b
            ("add" | "sub", "Tensor" | "Scalar") => {
                let ab = tensor_args(self, &["self", "other"], out.elem)?;
                let (a, mut b) = (ab[0], ab[1]);
                let alpha = float_attr("alpha", Some(1.0))?;
                if alpha != 1.0 {
                    let c = self.constant(alpha, out.elem);
                    b = self.binary("mul", b, c, out.elem)?;
                }
                Ok(vec![self.binary(base, a, b, out.elem)?])
            }
            ("mul" | "div", "Tensor" | "Scalar") | ("maximum" | "minimum", "default") | ("pow", "Tensor_Tensor" | "Tensor_Scalar") => {
                let second = if base == "pow" { "exponent" } else { "other" };
                let ab = tensor_args(self, &["self", second], out.elem)?;
                Ok(vec![self.binary(base, ab[0], ab[1], out.elem)?])
            }
            // comparisons -> cmp {predicate}
            (p @ ("eq" | "ne" | "lt" | "le" | "gt" | "ge"), "Scalar" | "Tensor") => {
                let e = mapped.first().map(|v| self.t(*v).elem).unwrap_or(ElemType::F32);
                let ab = tensor_args(self, &["self", "other"], e)?;
                Ok(vec![self.compare(p, ab[0], ab[1])?])
            }
            // isinf(x) -> |x| == inf, isfinite(x) -> |x| < inf (false for NaN), isnan(x) -> x != x
            ("isinf" | "isfinite" | "isnan", "default") => {
                let a = x(0)?;
                let e = self.t(a).elem;
                if base == "isnan" {
                    return Ok(vec![self.compare("ne", a, a)?]);
                }
                let m = self.unary("abs", a);
                let inf = self.constant(f64::INFINITY, e);
                Ok(vec![self.compare(if base == "isinf" { "eq" } else { "lt" }, m, inf)?])
            }
            // where(c, a, b) -> select
            ("where", "self") => {
                let cab = tensor_args(self, &["condition", "self", "other"], out.elem)?;
                Ok(vec![self.select(cab[0], cab[1], cab[2], out.elem)?])
            }
            // threshold_backward(grad, y, t) -> select(y <= t, 0, grad)
            ("threshold_backward", "default") => {
                let (g, y) = (x(0)?, x(1)?);
                let th = self.constant(float_attr("threshold", None)?, self.t(y).elem);
                let c = self.compare("le", y, th)?;
                let zero = self.constant(0.0, out.elem);
                Ok(vec![self.select(c, zero, g, out.elem)?])
            }
            // constants: a splat of one value
            ("scalar_tensor", "default") => {
                let v = float_attr("s", None)?;
                Ok(vec![self.emit("constant", vec![], vec![attr("value", Attr::Float(v))], out)])
            }
            ("full", "default") | ("full_like", "default") => {
                let v = float_attr("fill_value", None)?;
                Ok(vec![self.emit("constant", vec![], vec![attr("value", Attr::Float(v))], out)])
            }
            ("zeros_like" | "ones_like", "default") => {
                let v = if base == "zeros_like" { 0.0 } else { 1.0 };
                Ok(vec![self.emit("constant", vec![], vec![attr("value", Attr::Float(v))], out)])
            }
            // sum over dims (all dims when none are given)
            ("sum", "dim_IntList" | "default") | ("mean", "dim" | "default") => {
                let a = self.convert(x(0)?, out.elem);
                let r = rank(a, self);
                let (dims, keepdim) = reduction(r)?;
                let mut dims_sorted = dims.clone();
                dims_sorted.sort_unstable();
                dims_sorted.dedup();
                let s = self.emit(
                    "reduce_sum",
                    vec![a],
                    vec![attr("dims", Attr::Ints(dims_sorted.clone())), attr("keepdim", Attr::Bool(keepdim))],
                    out.clone(),
                );
                if base == "sum" {
                    return Ok(vec![s]);
                }
                let n: usize = dims_sorted.iter().map(|&d| self.t(a).shape[d as usize]).product();
                let c = self.constant(n as f64, out.elem);
                Ok(vec![self.binary("div", s, c, out.elem)?])
            }
            // amax / max over dims -> reduce_max
            ("amax", "default") | ("max", "default") => {
                let a = x(0)?;
                let r = rank(a, self);
                let (dims, keepdim) = reduction(r)?;
                Ok(vec![self.reduce("reduce_max", a, &dims, keepdim, &out)?])
            }
            // any(x, dims) -> reduce_max(x != 0) != 0
            ("any", "dim" | "dims" | "default") => {
                let a = self.convert(x(0)?, ElemType::F32);
                let r = rank(a, self);
                let (dims, keepdim) = reduction(r)?;
                let zero = self.constant(0.0, ElemType::F32);
                let nz = self.compare("ne", a, zero)?;
                let nz = self.convert(nz, ElemType::F32);
                let m = self.reduce("reduce_max", nz, &dims, keepdim, &TensorType::new(out.shape.clone(), ElemType::F32))?;
                Ok(vec![self.convert(m, ElemType::I1)])
            }
            // var_mean(x, dims, correction) -> (sum((x - mean)^2) / (n - correction), mean)
            ("var_mean" | "var", "correction") => {
                let a = x(0)?;
                let t = self.t(a);
                let r = t.rank() as i64;
                let (dims, keepdim) = reduction(r)?;
                let correction = float_attr("correction", Some(1.0))?;
                let n: usize = dims.iter().map(|&d| t.shape[d as usize]).product();
                let kept_shape: Vec<usize> =
                    (0..t.rank()).map(|d| if dims.contains(&(d as i64)) { 1 } else { t.shape[d] }).collect();
                let kept = TensorType::new(kept_shape, t.elem);
                let total = self.reduce("reduce_sum", a, &dims, true, &kept)?;
                let count = self.constant(n as f64, t.elem);
                let mean = self.binary("div", total, count, t.elem)?;
                let diff = self.binary("sub", a, mean, t.elem)?;
                let sq = self.binary("mul", diff, diff, t.elem)?;
                let ss = self.reduce("reduce_sum", sq, &dims, keepdim, &out)?;
                let denom = self.constant((n as f64 - correction).max(0.0), t.elem);
                let var = self.binary("div", ss, denom, t.elem)?;
                if base == "var" {
                    return Ok(vec![var]);
                }
                let mean_out = res.get(1).cloned().ok_or("var_mean has two results")?;
                let mean = self.reshape(mean, &mean_out);
                Ok(vec![var, mean])
            }
            // clamp(x, min, max) -> minimum(maximum(x, min), max); NaN stays NaN
            ("clamp", "default") | ("clamp_min", "default") | ("clamp_max", "default") => {
                let mut v = self.convert(x(0)?, out.elem);
                let lo = if base == "clamp_max" { None } else { op.attr(if base == "clamp" { "min" } else { "min" }).and_then(Attr::as_float) };
                let hi = if base == "clamp_min" { None } else { op.attr("max").and_then(Attr::as_float) };
                if let Some(lo) = lo {
                    let c = self.constant(lo, out.elem);
                    v = self.binary("maximum", v, c, out.elem)?;
                }
                if let Some(hi) = hi {
                    let c = self.constant(hi, out.elem);
                    v = self.binary("minimum", v, c, out.elem)?;
                }
                Ok(vec![v])
            }
            // boolean logic on bool tensors (as selects and compares)
            ("logical_not" | "bitwise_not", "default") => {
                let a = x(0)?;
                if base == "bitwise_not" && self.t(a).elem != ElemType::I1 {
                    return Err("bitwise_not is supported on bool tensors only".into());
                }
                let zero = self.constant(0.0, self.t(a).elem);
                Ok(vec![self.compare("eq", a, zero)?])
            }
            ("logical_and" | "bitwise_and" | "logical_or" | "bitwise_or", "default" | "Tensor") => {
                let (a, b) = (x(0)?, x(1)?);
                if base.starts_with("bitwise") && (self.t(a).elem != ElemType::I1 || self.t(b).elem != ElemType::I1) {
                    return Err(format!("{base} is supported on bool tensors only"));
                }
                let ca = self.convert(a, ElemType::I1);
                let cb = self.convert(b, ElemType::I1);
                if base.ends_with("and") {
                    let f = self.constant(0.0, ElemType::I1);
                    Ok(vec![self.select(ca, cb, f, ElemType::I1)?])
                } else {
                    let t = self.constant(1.0, ElemType::I1);
                    Ok(vec![self.select(ca, t, cb, ElemType::I1)?])
                }
            }
            // batched matmul
            ("bmm", "default") => Ok(vec![self.emit("matmul", vec![x(0)?, x(1)?], vec![], out)]),
            // shape-only ops -> reshape
            ("view" | "_unsafe_view" | "reshape", "default") | ("squeeze", "dim" | "dims" | "default") | ("unsqueeze", "default") => {
                Ok(vec![self.reshape(x(0)?, &out)])
            }
            ("expand", "default") => {
                let a = x(0)?;
                if self.t(a).shape == out.shape {
                    return Ok(vec![a]);
                }
                Ok(vec![self.emit("broadcast", vec![a], vec![], out)])
            }
            // no-ops on values (no aliasing survives functionalization)
            ("alias" | "detach" | "clone" | "lift_fresh_copy" | "_to_copy" | "contiguous", "default") => {
                Ok(vec![self.convert(x(0)?, out.elem)])
            }
            // shape-moving and neural-network families (legalize/nn.rs)
            ("slice", "Tensor") => self.slice_tensor(op, x(0)?, &out),
            ("slice_backward", "default") => self.slice_backward(op, x(0)?, &out),
            ("slice_scatter", "default") => self.slice_scatter(op, x(0)?, x(1)?, &out),
            ("select", "int") => self.select_int(op, x(0)?, &out),
            ("select_backward", "default") => self.select_backward(op, x(0)?, &out),
            ("cat", "default") => self.cat(op, mapped.clone(), &out),
            ("split_with_sizes", "default") | ("split", "Tensor") => self.split(op, x(0)?, &res),
            ("constant_pad_nd", "default") => self.constant_pad(op, x(0)?, &out),
            ("convolution", "default") => self.convolution(op, &mapped, &out),
            ("arange", "default" | "start" | "start_step") => self.arange(op, &out),
            // Uniform [0, 1) numbers (dropout's mask): one stream per op, drawn from the run's
            // seed on the mesh, so the values are reproducible but not eager's bits.
            ("rand_like" | "rand", "default") => {
                if out.elem != ElemType::F32 {
                    return Err(format!("random numbers of element type {} are not supported (only f32)", out.elem));
                }
                self.streams += 1;
                Ok(vec![self.emit("random", vec![], vec![attr("stream", Attr::Int(self.streams - 1))], out.clone())])
            }
            ("embedding", "default") => self.embedding(x(0)?, x(1)?, &out),
            ("embedding_dense_backward", "default") => self.embedding_backward(op, x(0)?, x(1)?, &out),
            ("index", "Tensor") => self.index(op, &mapped, &out),
            ("index_put", "default") => self.index_put(op, &mapped, &out),
            ("gather", "default") => self.gather(op, x(0)?, x(1)?, &out),
            ("scatter_add", "default") => self.scatter_add(op, &mapped, &out),
            ("argmax", "default") => self.argmax(op, x(0)?, &out),
            ("cumsum", "default") => self.cumsum(op, x(0)?, &out),
            ("max_pool2d_with_indices", "default") => self.max_pool(op, x(0)?, &res),
            ("max_pool2d_with_indices_backward", "default") => self.max_pool_backward(op, &mapped, &out),
            ("convolution_backward", "default") => self.convolution_backward(op, &mapped, &res),
            ("_native_batch_norm_legit_no_training", "default") => self.batch_norm_inference(op, &mapped, &out, res.len()),
            _ => Err(String::new()),
        }
    }
}
