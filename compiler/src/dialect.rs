//! The op sets of the two dialects torch-dojo defines, and their rules.
//!
//! - `aten.*` (and `prims.*`): ops as imported from PyTorch, named by overload
//!   (`aten.addmm.default`). They are checked only structurally; `legalize-aten` gives them
//!   meaning.
//! - `dojo.*`: graph level. Whole tensors, NumPy broadcasting, no placement.
//! - `d1.*`: mesh level. Every value but the function's host tensors lives on a block of cores
//!   with a [`Layout`]; compute ops run per core on the local shards, and data moves between
//!   cores only through `d1.reshard`/`d1.load`/`d1.store`, so every transfer is explicit.

use crate::ir::{Attr, ElemType, Func, Op, TensorType, Type};
use crate::layout::{Layout, NONE};

/// Elementwise functions of one operand (`dojo.<name>` and `d1.map {fn = "<name>"}`).
pub const UNARY: &[&str] =
    &["relu", "neg", "exp", "log", "sqrt", "rsqrt", "abs", "tanh", "sigmoid", "reciprocal", "erf"];
/// Elementwise arithmetic of two broadcast operands.
pub const BINARY: &[&str] = &["add", "sub", "mul", "div", "maximum", "minimum", "pow"];
/// Comparison predicates (`dojo.cmp {predicate}`, `d1.map {fn}`); the result is `i1`.
pub const COMPARE: &[&str] = &["eq", "ne", "lt", "le", "gt", "ge"];

/// Number of operands a `d1.map` function takes, or None if the name is unknown.
pub fn map_arity(func_name: &str) -> Option<usize> {
    if UNARY.contains(&func_name) || func_name == "convert" {
        Some(1)
    } else if BINARY.contains(&func_name) || COMPARE.contains(&func_name) {
        Some(2)
    } else if func_name == "select" {
        Some(3)
    } else {
        None
    }
}

/// An operand of one step of a fused elementwise expression.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum FusedOperand {
    /// The op's operand `i` (text `x<i>`).
    Input(usize),
    /// The value of earlier step `j` (text `t<j>`).
    Step(usize),
    /// A constant (a float literal).
    Const(f64),
}

/// One step: a `d1.map` function (`UNARY`, `BINARY`, `COMPARE` or `select`) of its operands.
#[derive(Clone, Debug, PartialEq)]
pub struct FusedStep {
    pub f: &'static str,
    pub args: Vec<FusedOperand>,
}

/// The body of `dojo.fused` and `d1.map {fn = "fused"}`: elementwise steps in order, the last
/// one being the result, in the `expr` attribute as text: `mul(x0,0.5);add(t0,x1);relu(t1)`.
/// All values are f32 per element (a comparison gives 1.0 or 0.0, as the `d1.map` comparisons
/// do), and every step computes what the op of the same name computes, so fusing a chain of
/// ops changes no bits.
#[derive(Clone, Debug, PartialEq)]
pub struct FusedExpr {
    pub steps: Vec<FusedStep>,
}

impl FusedExpr {
    /// Parses and checks the text form: known functions with their arity, each `t<j>` an
    /// earlier step, at least one step.
    pub fn parse(text: &str) -> Result<FusedExpr, String> {
        let mut steps = Vec::new();
        for (i, step) in text.split(';').enumerate() {
            let step = step.trim();
            let (name, rest) = step.split_once('(').ok_or(format!("step {i} '{step}' is not f(args)"))?;
            let body = rest.strip_suffix(')').ok_or(format!("step {i} '{step}' does not end with ')'"))?;
            let f = UNARY
                .iter()
                .chain(BINARY)
                .chain(COMPARE)
                .chain(&["select"])
                .find(|f| **f == name.trim())
                .copied()
                .ok_or(format!("step {i}: unknown function '{}'", name.trim()))?;
            let mut args = Vec::new();
            for a in body.split(',').map(str::trim) {
                let index = |p: &str| a.strip_prefix(p).and_then(|n| n.parse::<usize>().ok());
                args.push(if let Some(k) = index("x") {
                    FusedOperand::Input(k)
                } else if let Some(j) = index("t") {
                    if j >= i {
                        return Err(format!("step {i} uses t{j}, which is not an earlier step"));
                    }
                    FusedOperand::Step(j)
                } else {
                    FusedOperand::Const(a.parse::<f64>().map_err(|_| format!("step {i}: bad operand '{a}' (x<i>, t<j> or a number)"))?)
                });
            }
            let n = map_arity(f).unwrap_or(0);
            if args.len() != n {
                return Err(format!("step {i}: {f} takes {n} operand(s), got {}", args.len()));
            }
            steps.push(FusedStep { f, args });
        }
        Ok(FusedExpr { steps })
    }

    /// One more than the largest input index used (0 when no input is used).
    pub fn inputs(&self) -> usize {
        self.steps
            .iter()
            .flat_map(|s| &s.args)
            .filter_map(|a| match a {
                FusedOperand::Input(k) => Some(k + 1),
                _ => None,
            })
            .max()
            .unwrap_or(0)
    }
}

impl std::fmt::Display for FusedExpr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, s) in self.steps.iter().enumerate() {
            if i > 0 {
                f.write_str(";")?;
            }
            write!(f, "{}(", s.f)?;
            for (j, a) in s.args.iter().enumerate() {
                if j > 0 {
                    f.write_str(",")?;
                }
                match a {
                    FusedOperand::Input(k) => write!(f, "x{k}")?,
                    FusedOperand::Step(k) => write!(f, "t{k}")?,
                    FusedOperand::Const(c) => write!(f, "{c:?}")?,
                }
            }
            f.write_str(")")?;
        }
        Ok(())
    }
}

/// The result of a `d1.load` or `d1.reshard`: the whole operand, or the box `offsets` +
/// `sizes` of it.
fn boxed_result(op: &Op, a: &TensorType, r: &TensorType) -> Result<(), String> {
    match (op.attr("offsets"), op.attr("sizes")) {
        (None, None) => expect_shape("result", &r.shape, &a.shape),
        (Some(o), Some(s)) => {
            let (o, s) = (o.as_ints().ok_or("offsets must be array<i64>")?, s.as_ints().ok_or("sizes must be array<i64>")?);
            if o.len() != a.rank() || s.len() != a.rank() {
                return Err("offsets and sizes need one entry per dimension".into());
            }
            for d in 0..a.rank() {
                if o[d] < 0 || s[d] < 1 || (o[d] + s[d]) as usize > a.shape[d] {
                    return Err(format!("region dim {d} [{}, +{}) is outside 0..{}", o[d], s[d], a.shape[d]));
                }
            }
            let want: Vec<usize> = s.iter().map(|&x| x as usize).collect();
            expect_shape("result", &r.shape, &want)
        }
        _ => Err(format!("{} needs both 'offsets' and 'sizes', or neither", op.name)),
    }
}

/// The `expr` of a fused op, checked against its operand count.
fn fused_expr(op: &Op) -> Result<FusedExpr, String> {
    let e = FusedExpr::parse(str_attr(op, "expr")?).map_err(|e| format!("bad 'expr': {e}"))?;
    if e.inputs() > op.operands.len() {
        return Err(format!("'expr' reads x{} but the op has {} operand(s)", e.inputs() - 1, op.operands.len()));
    }
    Ok(e)
}

/// The optional `epilogue` of a `dojo.matmul` / `d1.matmul`: elementwise steps applied to the
/// product in the matmul's kernel before it is written, as a [`FusedExpr`] whose `x0` is the
/// product and whose `x<i>` (i >= 1) is the op's extra operand `i`, the extra operands being
/// the op's last [`epilogue_extras`] ones (after `a`, `b` and, for `d1.matmul`, the
/// accumulator). The result is f32.
pub fn matmul_epilogue(op: &Op) -> Result<Option<FusedExpr>, String> {
    match op.attr("epilogue") {
        None => Ok(None),
        Some(a) => {
            let text = a.as_str().ok_or("'epilogue' must be a string")?;
            FusedExpr::parse(text).map(Some).map_err(|e| format!("bad 'epilogue': {e}"))
        }
    }
}

/// How many extra operands an epilogue reads (`x1` .. the largest `x<i>` it uses).
pub fn epilogue_extras(e: &FusedExpr) -> usize {
    e.inputs().saturating_sub(1)
}

/// An epilogue's extra operands (the last `extras` of `op`) broadcast to the product's shape
/// `rt`, which is f32.
fn check_epilogue(func: &Func, op: &Op, extras: usize, rt: &TensorType) -> Result<(), String> {
    if rt.elem != ElemType::F32 {
        return Err(format!("a matmul with an epilogue has an f32 result, not {}", rt.elem));
    }
    for i in op.operands.len() - extras..op.operands.len() {
        let t = tensor_of(func, op, i)?;
        if broadcast_shapes(&[&t.shape, &rt.shape]).ok().as_deref() != Some(rt.shape.as_slice()) {
            return Err(format!("epilogue operand #{i} of shape {:?} does not broadcast to the result {:?}", t.shape, rt.shape));
        }
    }
    Ok(())
}

/// NumPy broadcasting of shapes (right-aligned, size 1 stretches).
pub fn broadcast_shapes(shapes: &[&[usize]]) -> Result<Vec<usize>, String> {
    let rank = shapes.iter().map(|s| s.len()).max().unwrap_or(0);
    let mut out = vec![1usize; rank];
    for s in shapes {
        let off = rank - s.len();
        for (i, &d) in s.iter().enumerate() {
            let o = &mut out[off + i];
            if *o == 1 {
                *o = d;
            } else if d != 1 && d != *o {
                return Err(format!("shapes {:?} do not broadcast together", shapes));
            }
        }
    }
    Ok(out)
}

fn tensor_of<'a>(func: &'a Func, op: &Op, i: usize) -> Result<&'a TensorType, String> {
    let v = op.operands.get(i).ok_or(format!("missing operand #{i}"))?;
    func.tensor(*v).ok_or(format!("operand #{i} must be a tensor"))
}

fn result_of<'a>(func: &'a Func, op: &Op, i: usize) -> Result<&'a TensorType, String> {
    if i >= op.num_results {
        return Err(format!("missing result #{i}"));
    }
    func.tensor(op.result(i)).ok_or(format!("result #{i} must be a tensor"))
}

fn arity(op: &Op, operands: usize, results: usize) -> Result<(), String> {
    if op.operands.len() != operands || op.num_results != results {
        return Err(format!(
            "expects {operands} operand(s) and {results} result(s), has {} and {}",
            op.operands.len(),
            op.num_results
        ));
    }
    Ok(())
}

fn ints_attr<'a>(op: &'a Op, name: &str) -> Result<&'a [i64], String> {
    op.attr(name).and_then(Attr::as_ints).ok_or(format!("needs attribute '{name}' as array<i64: ...>"))
}

fn float_attr(op: &Op, name: &str) -> Result<f64, String> {
    op.attr(name).and_then(Attr::as_float).ok_or(format!("needs attribute '{name}' as a number"))
}

fn str_attr<'a>(op: &'a Op, name: &str) -> Result<&'a str, String> {
    op.attr(name).and_then(Attr::as_str).ok_or(format!("needs attribute '{name}' as a string"))
}

fn expect_shape(what: &str, got: &[usize], want: &[usize]) -> Result<(), String> {
    if got != want {
        return Err(format!("{what} has shape {got:?}, expected {want:?}"));
    }
    Ok(())
}

/// Check that `perm` is a permutation of 0..rank.
pub fn check_perm(perm: &[i64], rank: usize) -> Result<Vec<usize>, String> {
    let mut seen = vec![false; rank];
    let mut out = Vec::with_capacity(rank);
    if perm.len() != rank {
        return Err(format!("perm {perm:?} has {} entries for rank {rank}", perm.len()));
    }
    for &p in perm {
        let ok = p >= 0 && (p as usize) < rank && !seen[p as usize];
        if !ok {
            return Err(format!("perm {perm:?} is not a permutation of 0..{rank}"));
        }
        seen[p as usize] = true;
        out.push(p as usize);
    }
    Ok(out)
}

/// Check reduce dims are distinct and in range; returns them sorted.
pub fn check_dims(dims: &[i64], rank: usize) -> Result<Vec<usize>, String> {
    let mut out: Vec<usize> = Vec::with_capacity(dims.len());
    for &d in dims {
        if d < 0 || d as usize >= rank {
            return Err(format!("dim {d} is out of range for rank {rank}"));
        }
        if out.contains(&(d as usize)) {
            return Err(format!("dim {d} is listed twice"));
        }
        out.push(d as usize);
    }
    out.sort_unstable();
    Ok(out)
}

fn reduced_shape(shape: &[usize], dims: &[usize], keepdim: bool) -> Vec<usize> {
    let mut out = Vec::new();
    for (d, &n) in shape.iter().enumerate() {
        if dims.contains(&d) {
            if keepdim {
                out.push(1);
            }
        } else {
            out.push(n);
        }
    }
    out
}

fn same_elem(what: &str, a: &TensorType, b: &TensorType) -> Result<(), String> {
    if a.elem != b.elem {
        return Err(format!("{what}: element types {} and {} differ", a.elem, b.elem));
    }
    Ok(())
}

/// Verify one `dojo.*` op. `Err` says what is wrong.
pub fn verify_dojo(func: &Func, op: &Op) -> Result<(), String> {
    let kind = &op.name["dojo.".len()..];
    match kind {
        "matmul" => {
            let epilogue = matmul_epilogue(op)?;
            let extras = epilogue.as_ref().map_or(0, epilogue_extras);
            arity(op, 2 + extras, 1)?;
            let (a, b, r) = (tensor_of(func, op, 0)?, tensor_of(func, op, 1)?, result_of(func, op, 0)?);
            if epilogue.is_some() {
                check_epilogue(func, op, extras, r)?;
            }
            // [m, k] @ [k, n], [bt, m, k] @ [bt, k, n], or [d..., k] @ [k, n] (rows over d...).
            let ok_rank = (a.rank() == 2 && b.rank() == 2) || (a.rank() == 3 && b.rank() == 3 && a.shape[0] == b.shape[0]) || (a.rank() > 3 && b.rank() == 2);
            if !ok_rank || a.shape[a.rank() - 1] != b.shape[b.rank() - 2] {
                return Err(format!("cannot multiply {:?} by {:?}", a.shape, b.shape));
            }
            let mut want = a.shape[..a.rank() - 1].to_vec();
            want.push(b.shape[b.rank() - 1]);
            expect_shape("result", &r.shape, &want)?;
            // D6: storage-format operands (bf16, CFloat; may differ) accumulate into f32.
            if a.elem != r.elem || b.elem != r.elem {
                let storage = |e: ElemType| matches!(e, ElemType::F32 | ElemType::BF16 | ElemType::CFloat(..));
                if !(storage(a.elem) && storage(b.elem) && r.elem == ElemType::F32) {
                    return Err(format!(
                        "operands {} and {} with result {}: mixed or low-precision operands need an f32 result",
                        a.elem, b.elem, r.elem
                    ));
                }
            }
            Ok(())
        }
        k if UNARY.contains(&k) => {
            arity(op, 1, 1)?;
            let (a, r) = (tensor_of(func, op, 0)?, result_of(func, op, 0)?);
            expect_shape("result", &r.shape, &a.shape)?;
            same_elem("result", a, r)
        }
        k if BINARY.contains(&k) => {
            arity(op, 2, 1)?;
            let (a, b, r) = (tensor_of(func, op, 0)?, tensor_of(func, op, 1)?, result_of(func, op, 0)?);
            let want = broadcast_shapes(&[&a.shape, &b.shape])?;
            expect_shape("result", &r.shape, &want)?;
            same_elem("operands", a, b)?;
            same_elem("result", a, r)
        }
        "fused" => {
            fused_expr(op)?;
            if op.operands.is_empty() || op.num_results != 1 {
                return Err("dojo.fused takes one or more operands and has one result".into());
            }
            let shapes = (0..op.operands.len()).map(|i| tensor_of(func, op, i).map(|t| t.shape.as_slice())).collect::<Result<Vec<_>, _>>()?;
            let r = result_of(func, op, 0)?;
            expect_shape("result", &r.shape, &broadcast_shapes(&shapes)?)?;
            if r.elem != ElemType::F32 {
                return Err(format!("a fused result is f32, not {}", r.elem));
            }
            Ok(())
        }
        "cmp" => {
            arity(op, 2, 1)?;
            let pred = str_attr(op, "predicate")?;
            if !COMPARE.contains(&pred) {
                return Err(format!("unknown predicate '{pred}': expected one of {COMPARE:?}"));
            }
            let (a, b, r) = (tensor_of(func, op, 0)?, tensor_of(func, op, 1)?, result_of(func, op, 0)?);
            let want = broadcast_shapes(&[&a.shape, &b.shape])?;
            expect_shape("result", &r.shape, &want)?;
            same_elem("operands", a, b)?;
            if r.elem != ElemType::I1 {
                return Err("comparison result must have element type i1".into());
            }
            Ok(())
        }
        "select" => {
            arity(op, 3, 1)?;
            let (c, a, b) = (tensor_of(func, op, 0)?, tensor_of(func, op, 1)?, tensor_of(func, op, 2)?);
            let r = result_of(func, op, 0)?;
            if c.elem != ElemType::I1 {
                return Err("select condition must have element type i1".into());
            }
            let want = broadcast_shapes(&[&c.shape, &a.shape, &b.shape])?;
            expect_shape("result", &r.shape, &want)?;
            same_elem("operands", a, b)?;
            same_elem("result", a, r)
        }
        "constant" => {
            arity(op, 0, 1)?;
            float_attr(op, "value")?;
            result_of(func, op, 0).map(|_| ())
        }
        "reduce_sum" | "reduce_max" => {
            arity(op, 1, 1)?;
            let (a, r) = (tensor_of(func, op, 0)?, result_of(func, op, 0)?);
            let dims = check_dims(ints_attr(op, "dims")?, a.rank())?;
            let keep = op.attr("keepdim").and_then(Attr::as_bool).ok_or("needs attribute 'keepdim' as a bool")?;
            expect_shape("result", &r.shape, &reduced_shape(&a.shape, &dims, keep))?;
            same_elem("result", a, r)
        }
        "transpose" => {
            arity(op, 1, 1)?;
            let (a, r) = (tensor_of(func, op, 0)?, result_of(func, op, 0)?);
            let perm = check_perm(ints_attr(op, "perm")?, a.rank())?;
            let want: Vec<usize> = perm.iter().map(|&p| a.shape[p]).collect();
            expect_shape("result", &r.shape, &want)?;
            same_elem("result", a, r)
        }
        "reshape" => {
            arity(op, 1, 1)?;
            let (a, r) = (tensor_of(func, op, 0)?, result_of(func, op, 0)?);
            if a.numel() != r.numel() {
                return Err(format!("cannot reshape {:?} ({} elements) to {:?}", a.shape, a.numel(), r.shape));
            }
            same_elem("result", a, r)
        }
        "broadcast" => {
            arity(op, 1, 1)?;
            let (a, r) = (tensor_of(func, op, 0)?, result_of(func, op, 0)?);
            let want = broadcast_shapes(&[&a.shape, &r.shape])?;
            if want != r.shape {
                return Err(format!("cannot broadcast {:?} to {:?}", a.shape, r.shape));
            }
            same_elem("result", a, r)
        }
        "convert" => {
            arity(op, 1, 1)?;
            let (a, r) = (tensor_of(func, op, 0)?, result_of(func, op, 0)?);
            expect_shape("result", &r.shape, &a.shape)
        }
        "slice" | "pad" | "concat" => verify_movement(kind, func, op),
        "on_chip" => {
            // Identity; `lower-to-d1` places the value, and what is computed from it, on
            // chip `chip` (row-major over the target's chips; see split-batch).
            arity(op, 1, 1)?;
            let (a, r) = (tensor_of(func, op, 0)?, result_of(func, op, 0)?);
            if op.attr("chip").and_then(Attr::as_int).is_none_or(|c| c < 0) {
                return Err("needs attribute 'chip' as a non-negative integer".into());
            }
            expect_shape("result", &r.shape, &a.shape)?;
            same_elem("result", a, r)
        }
        "iota" => verify_iota(func, op),
        "random" => verify_random(func, op),
        "embedding" | "embedding_grad" => verify_embedding(kind, func, op),
        other => Err(format!("unknown op 'dojo.{other}'")),
    }
}

/// Non-negative integer attribute entries, one per dimension of a rank-`rank` operand.
fn dims_attr(op: &Op, name: &str, rank: usize) -> Result<Vec<usize>, String> {
    let v = ints_attr(op, name)?;
    if v.len() != rank || v.iter().any(|&x| x < 0) {
        return Err(format!("'{name}' needs {rank} non-negative entries, has {v:?}"));
    }
    Ok(v.iter().map(|&x| x as usize).collect())
}

/// The rules of the data-movement ops, the same at both levels (`dojo.*` on whole tensors,
/// `d1.*` on mesh values of any layouts):
/// - `slice {offsets, strides}`: `out[j] = in[offsets + j*strides]`; the result type gives
///   the sizes, every index read must be inside the operand.
/// - `pad {low, high, interior, value}`: `in[i]` lands at `low + i*(interior+1)`, `value`
///   elsewhere; the result has `low + n + (n-1)*interior + high` elements on each dim.
/// - `concat {dim}`: operands joined along `dim`, all other dims equal.
pub fn verify_movement(kind: &str, func: &Func, op: &Op) -> Result<(), String> {
    let r = result_of(func, op, 0)?;
    match kind {
        "slice" => {
            arity(op, 1, 1)?;
            let a = tensor_of(func, op, 0)?;
            same_elem("result", a, r)?;
            let (offsets, strides) = (dims_attr(op, "offsets", a.rank())?, dims_attr(op, "strides", a.rank())?);
            if r.rank() != a.rank() {
                return Err(format!("result rank {} must equal the operand's {}", r.rank(), a.rank()));
            }
            for d in 0..a.rank() {
                let last = offsets[d] as u128 + (r.shape[d].max(1) - 1) as u128 * strides[d] as u128;
                if strides[d] == 0 || r.shape[d] == 0 || last >= a.shape[d] as u128 {
                    return Err(format!(
                        "dim {d}: {} elements from {} in steps of {} do not fit in {}",
                        r.shape[d], offsets[d], strides[d], a.shape[d]
                    ));
                }
            }
            Ok(())
        }
        "pad" => {
            arity(op, 1, 1)?;
            let a = tensor_of(func, op, 0)?;
            same_elem("result", a, r)?;
            float_attr(op, "value")?;
            let (low, high, interior) =
                (dims_attr(op, "low", a.rank())?, dims_attr(op, "high", a.rank())?, dims_attr(op, "interior", a.rank())?);
            let want: Vec<usize> = (0..a.rank())
                .map(|d| low[d] + high[d] + a.shape[d] + a.shape[d].saturating_sub(1) * interior[d])
                .collect();
            expect_shape("result", &r.shape, &want)
        }
        "concat" => {
            if op.operands.is_empty() || op.num_results != 1 {
                return Err("concat takes one or more operands and has one result".into());
            }
            let dim = op.attr("dim").and_then(Attr::as_int).ok_or("needs attribute 'dim' as an integer")?;
            let first = tensor_of(func, op, 0)?;
            if dim < 0 || dim as usize >= first.rank() {
                return Err(format!("dim {dim} is out of range for rank {}", first.rank()));
            }
            let dim = dim as usize;
            let mut want = first.shape.clone();
            want[dim] = 0;
            for i in 0..op.operands.len() {
                let t = tensor_of(func, op, i)?;
                same_elem("operands", first, t)?;
                let fits = t.rank() == first.rank() && (0..t.rank()).all(|d| d == dim || t.shape[d] == first.shape[d]);
                if !fits {
                    return Err(format!("operand #{i} of shape {:?} does not join {:?} along dim {dim}", t.shape, first.shape));
                }
                want[dim] += t.shape[dim];
            }
            same_elem("result", first, r)?;
            expect_shape("result", &r.shape, &want)
        }
        other => Err(format!("'{other}' is not a data-movement op")),
    }
}

/// - `embedding(table: [V, D], ids: S x i64) -> S + [D]`: row `ids[i]` for every index.
/// - `embedding_grad {padding_idx?}(grad: S + [D], ids: S x i64) -> [V, D]`: gradient rows
///   summed per id (the row `padding_idx` gets none).
fn verify_embedding(kind: &str, func: &Func, op: &Op) -> Result<(), String> {
    arity(op, 2, 1)?;
    let (a, ids, r) = (tensor_of(func, op, 0)?, tensor_of(func, op, 1)?, result_of(func, op, 0)?);
    if ids.elem != ElemType::I64 {
        return Err(format!("ids must be i64, are {}", ids.elem));
    }
    same_elem("result", a, r)?;
    let (rows, grad) = if kind == "embedding" { (a, r) } else { (r, a) };
    let fits = rows.rank() == 2
        && grad.rank() == ids.rank() + 1
        && grad.shape[..ids.rank()] == ids.shape[..]
        && grad.shape[ids.rank()] == rows.shape[1];
    if !fits {
        return Err(format!("table {:?}, ids {:?} and rows {:?} do not fit", rows.shape, ids.shape, grad.shape));
    }
    Ok(())
}

/// `iota {dim}`: no operands; the result counts 0, 1, ... along `dim` (f32, i64 or i32).
/// `random {stream}`: uniform f32 numbers in [0, 1), no operands.
fn verify_random(func: &Func, op: &Op) -> Result<(), String> {
    arity(op, 0, 1)?;
    let r = result_of(func, op, 0)?;
    let stream = op.attr("stream").and_then(Attr::as_int).ok_or("needs attribute 'stream' as an integer")?;
    if stream < 0 {
        return Err(format!("stream {stream} must not be negative"));
    }
    if r.elem != ElemType::F32 {
        return Err("random numbers are f32".into());
    }
    Ok(())
}

fn verify_iota(func: &Func, op: &Op) -> Result<(), String> {
    arity(op, 0, 1)?;
    let r = result_of(func, op, 0)?;
    let dim = op.attr("dim").and_then(Attr::as_int).ok_or("needs attribute 'dim' as an integer")?;
    if dim < 0 || dim as usize >= r.rank() {
        return Err(format!("dim {dim} is out of range for rank {}", r.rank()));
    }
    if !matches!(r.elem, ElemType::F32 | ElemType::I64 | ElemType::I32) || r.shape[dim as usize] > 1 << 24 {
        return Err("iota counts in f32, i64 or i32, below 2^24".into());
    }
    Ok(())
}

/// The layout of a mesh value's defining op.
pub fn layout_of(op: &Op) -> Result<Layout, String> {
    Layout::from_attr(op.attr("layout").ok_or("needs a 'layout' attribute")?)
}

/// Whether each value of a d1-level function lives on the host (arguments, `d1.store`
/// results) rather than on the mesh.
pub fn host_values(func: &Func) -> Vec<bool> {
    let mut host = vec![false; func.value_types.len()];
    for a in func.args() {
        host[a.index()] = true;
    }
    for op in &func.ops {
        if op.name == "d1.store" {
            for r in op.results() {
                host[r.index()] = true;
            }
        }
    }
    host
}

/// Verify one `d1.*` op. `layouts[v]` is the layout of mesh value `v` (None on the host).
pub fn verify_d1(func: &Func, op: &Op, layouts: &[Option<Layout>]) -> Result<(), String> {
    let kind = &op.name["d1.".len()..];
    let mesh = |i: usize| -> Result<&Layout, String> {
        let v = op.operands.get(i).ok_or(format!("missing operand #{i}"))?;
        layouts
            .get(v.index())
            .and_then(Option::as_ref)
            .ok_or(format!("operand #{i} must live on the mesh (it is a host tensor: load it with d1.load)"))
    };
    if kind == "store" {
        // With `dim`: the host tensor is the operands' concatenation along it (a result
        // computed in parts, e.g. a matmul's row blocks, each stored once computed).
        if op.attr("dim").is_some() {
            for i in 0..op.operands.len() {
                mesh(i)?;
            }
            return verify_movement("concat", func, op);
        }
        arity(op, 1, 1)?;
        mesh(0)?;
        let (a, r) = (tensor_of(func, op, 0)?, result_of(func, op, 0)?);
        // Or the operand's first dim split into the result's leading dims, the rest equal
        // (a reshape only going to the host: the host's row-major elements are the same).
        let q = (r.rank() + 1).saturating_sub(a.rank());
        let viewed = a.rank() >= 1 && q >= 1 && a.shape[1..] == r.shape[q..] && r.shape[..q].iter().product::<usize>() == a.shape[0];
        if a.elem != r.elem || (a != r && !viewed) {
            return Err(format!("d1.store result type must equal its operand's, or split its first dim into leading dims (the rest equal); got {:?} -> {:?}", a.shape, r.shape));
        }
        return Ok(());
    }
    let out = layout_of(op)?;
    let r = result_of(func, op, 0)?;
    out.check(&r.shape).map_err(|e| format!("result layout: {e}"))?;
    match kind {
        "load" => {
            arity(op, 1, 1)?;
            let v = op.operands[0];
            if layouts.get(v.index()).is_some_and(Option::is_some) {
                return Err("d1.load takes a host tensor; this operand is already on the mesh".into());
            }
            let a = tensor_of(func, op, 0)?;
            same_elem("result", a, r)?;
            boxed_result(op, a, r)
        }
        "reshard" => {
            arity(op, 1, 1)?;
            mesh(0)?;
            let a = tensor_of(func, op, 0)?;
            same_elem("result", a, r)?;
            boxed_result(op, a, r)
        }
        "fill" => {
            arity(op, 0, 1)?;
            float_attr(op, "value").map(|_| ())
        }
        "map" => {
            let f = str_attr(op, "fn")?;
            let n = if f == "fused" {
                fused_expr(op)?;
                op.operands.len().max(1)
            } else {
                map_arity(f).ok_or(format!("unknown map function '{f}'"))?
            };
            arity(op, n, 1)?;
            let mut shapes = Vec::new();
            for i in 0..n {
                let a = tensor_of(func, op, i)?;
                let l = mesh(i)?;
                check_aligned(l, &a.shape, &out, &r.shape).map_err(|e| format!("operand #{i}: {e}"))?;
                shapes.push(a.shape.as_slice());
            }
            let want = broadcast_shapes(&shapes)?;
            expect_shape("result", &r.shape, &want)?;
            if COMPARE.contains(&f) && r.elem != ElemType::I1 {
                return Err("comparison result must have element type i1".into());
            }
            Ok(())
        }
        "matmul" => {
            let epilogue = matmul_epilogue(op)?;
            let extras = epilogue.as_ref().map_or(0, epilogue_extras);
            let with = |n: usize| if extras == 0 { String::new() } else { format!(" plus the epilogue's {n}") };
            if !(op.operands.len() == 2 + extras || op.operands.len() == 3 + extras) || op.num_results != 1 {
                return Err(format!("d1.matmul takes (a, b) or (a, b, acc){} and has one result", with(extras)));
            }
            let (a, b) = (tensor_of(func, op, 0)?, tensor_of(func, op, 1)?);
            let (la, lb) = (mesh(0)?, mesh(1)?);
            let r = a.rank();
            // `[d..., k] @ [k, n]`: every dim of `a` but the last is rows.
            let flat = r > 3 && b.rank() == 2;
            let ok = if flat {
                a.shape[r - 1] == b.shape[0]
            } else {
                (r == 2 || r == 3) && b.rank() == r && a.shape[r - 1] == b.shape[r - 2] && a.shape[..r - 2] == b.shape[..r - 2]
            };
            if !ok {
                return Err(format!("cannot multiply {:?} by {:?}", a.shape, b.shape));
            }
            let mut want = a.shape[..r - 1].to_vec();
            want.push(b.shape[b.rank() - 1]);
            let rt = result_of(func, op, 0)?;
            expect_shape("result", &rt.shape, &want)?;
            // Every core multiplies its row block of `a` by its column block of `b` (of its
            // batches: a batch dim is split like the result's): the contraction dim is whole
            // on every core.
            let (want_a, want_b) = if flat {
                let a_split = [out.split[..r - 1].to_vec(), vec![NONE]].concat();
                (Layout { origin: out.origin, grid: out.grid, split: a_split }, Layout { origin: out.origin, grid: out.grid, split: vec![NONE, out.split[r - 1]] })
            } else {
                let lead = out.split[..r - 2].to_vec();
                (
                    Layout { origin: out.origin, grid: out.grid, split: [lead.clone(), vec![out.split[r - 2], NONE]].concat() },
                    Layout { origin: out.origin, grid: out.grid, split: [lead, vec![NONE, out.split[r - 1]]].concat() },
                )
            };
            if *la != want_a {
                return Err(format!("operand a must have layout {want_a} for this result, has {la}"));
            }
            if *lb != want_b {
                return Err(format!("operand b must have layout {want_b} for this result, has {lb}"));
            }
            if op.operands.len() == 3 + extras {
                let acc = tensor_of(func, op, 2)?;
                expect_shape("accumulator", &acc.shape, &rt.shape)?;
                if *mesh(2)? != out {
                    return Err("accumulator must have the result's layout".into());
                }
            }
            if epilogue.is_some() {
                check_epilogue(func, op, extras, rt)?;
                for i in op.operands.len() - extras..op.operands.len() {
                    let t = tensor_of(func, op, i)?;
                    check_aligned(mesh(i)?, &t.shape, &out, &rt.shape).map_err(|e| format!("epilogue operand #{i}: {e}"))?;
                }
            }
            Ok(())
        }
        "reduce_sum" | "reduce_max" => {
            arity(op, 1, 1)?;
            let a = tensor_of(func, op, 0)?;
            let la = mesh(0)?;
            let dims = check_dims(ints_attr(op, "dims")?, a.rank())?;
            // Each core reduces its shard: a split dim leaves one partial per chunk.
            let want: Vec<usize> = (0..a.rank())
                .map(|d| if dims.contains(&d) { la.axis_len(la.split[d]) } else { a.shape[d] })
                .collect();
            expect_shape("result", &r.shape, &want)?;
            if out.origin != la.origin || out.grid != la.grid || out.split != la.split {
                return Err(format!("{} result layout must equal its operand's", op.name));
            }
            Ok(())
        }
        "transpose" => {
            arity(op, 1, 1)?;
            let a = tensor_of(func, op, 0)?;
            let la = mesh(0)?;
            let perm = check_perm(ints_attr(op, "perm")?, a.rank())?;
            let want: Vec<usize> = perm.iter().map(|&p| a.shape[p]).collect();
            expect_shape("result", &r.shape, &want)?;
            let split: Vec<i8> = perm.iter().map(|&p| la.split[p]).collect();
            if out.origin != la.origin || out.grid != la.grid || out.split != split {
                return Err("d1.transpose result layout must be its operand's, permuted".into());
            }
            Ok(())
        }
        "reshape" => {
            arity(op, 1, 1)?;
            let a = tensor_of(func, op, 0)?;
            let la = mesh(0)?;
            if a.numel() != r.numel() {
                return Err(format!("cannot reshape {:?} to {:?}", a.shape, r.shape));
            }
            // A local reshape is only valid when every core's shard reshapes to its new shard.
            let same_block = out.origin == la.origin && out.grid == la.grid;
            if !same_block || !crate::layout::reshape_is_local(out.grid, &a.shape, &la.split, &r.shape, &out.split) {
                return Err("d1.reshape must be local: each split dim keeps its size and the product of the dims before it (reshard first)".into());
            }
            Ok(())
        }
        "iota" => verify_iota(func, op),
        "random" => verify_random(func, op),
        "embedding" if op.attr("vocab_parts").is_some() => {
            // One part per chunk of the table's rows: result [P] + S + [D], its dim 0 split
            // like the table's rows, ids whole on every core.
            let (lt, li) = (mesh(0)?, mesh(1)?);
            let (t, ids) = (tensor_of(func, op, 0)?, tensor_of(func, op, 1)?);
            let parts = op.attr("vocab_parts").and_then(Attr::as_int).ok_or("vocab_parts must be an integer")?;
            let want: Vec<usize> = std::iter::once(parts.max(0) as usize).chain(ids.shape.iter().copied()).chain(t.shape.get(1).copied()).collect();
            if ids.elem != ElemType::I64 || t.rank() != 2 || r.shape != want {
                return Err(format!("vocab parts of table {:?} by ids {:?} must be i64 ids and a result {want:?}, not {:?}", t.shape, ids.shape, r.shape));
            }
            let same_block = |l: &Layout| l.origin == out.origin && l.grid == out.grid;
            let rows_axis = lt.split[0];
            if !same_block(lt) || !same_block(li) || rows_axis == NONE || out.split[0] != rows_axis || out.axis_len(rows_axis) != parts as usize {
                return Err("d1.embedding {vocab_parts}: table, ids and result share one block; the table's rows and the result's dim 0 split over the same mesh axis in vocab_parts chunks".into());
            }
            if out.split[out.split.len() - 1] != lt.split[1] || li.split.iter().any(|&s| s != NONE) || out.split[1..out.split.len() - 1].iter().any(|&s| s != NONE) {
                return Err("d1.embedding {vocab_parts}: the result's last dim splits like the table's columns; the ids are whole on every core".into());
            }
            Ok(())
        }
        "embedding" | "embedding_grad" => {
            mesh(0)?;
            mesh(1)?;
            verify_embedding(kind, func, op)
        }
        "slice" | "pad" | "concat" => {
            for i in 0..op.operands.len() {
                mesh(i)?;
            }
            verify_movement(kind, func, op)
        }
        other => Err(format!("unknown op 'd1.{other}'")),
    }
}

/// An elementwise operand must sit where the result's cores need it: same block, and each of
/// its dims (right-aligned with the result's) split like the result's dim, or of size 1 and
/// not split (broadcast).
pub fn check_aligned(l: &Layout, shape: &[usize], out: &Layout, out_shape: &[usize]) -> Result<(), String> {
    if l.origin != out.origin || l.grid != out.grid {
        return Err("must be on the same block of cores as the result".into());
    }
    let off = out_shape.len() - shape.len().min(out_shape.len());
    for (d, &n) in shape.iter().enumerate() {
        let od = off + d;
        let want = if n == 1 && out_shape[od] != 1 { NONE } else { out.split[od] };
        if l.split[d] != want {
            return Err(format!("dim {d} must be split {want}, is split {}", l.split[d]));
        }
    }
    Ok(())
}

/// The type of a value if it is a tensor, for messages.
pub fn describe_type(t: &Type) -> String {
    t.to_string()
}
