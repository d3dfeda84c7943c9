//! `split-batch{mesh=<preset> parts=<n>}`: data parallelism over the chips of a multi-chip
//! target, on the captured `aten.*` graph (before legalization).
//!
//! A function whose every op treats the samples of its batch independently is copied once
//! per part, each copy computing a contiguous slice of the batch on its own chip:
//! - the batch comes in through the data inputs of convolutions (an argument used as a
//!   convolution's input, its dim 0); each part takes its slice (`dojo.slice`) and marks it
//!   `dojo.on_chip {chip}`, so `lower-to-d1` places everything computed from it on that chip;
//! - the batch dim of every value is followed through the ops (`rule`); an op that mixes
//!   samples (a reduction over the batch, a training batch norm, a reshape cutting the batch
//!   dim, an op without a rule) leaves the function whole, and the function's attribute
//!   `dojo.split` says why;
//! - values that do not depend on the batch (weights, their transposes) are computed once
//!   and shared by the parts; each part's chip loads what it uses;
//! - batched results are the parts' results joined by a `dojo.concat` along the batch dim.
//!
//! Every part computes exactly what the whole graph computes for its samples, so the result
//! is the same bits (the kernels do not depend on the batch size). The number of parts is
//! the fewest that give each chip the smallest share: `ceil(N / ceil(N / chips))` (batch 32
//! on a tile's 25 chips: 16 parts of 2).

use dojo_compiler::{attr, Attr, Func, Module, Op, Pass, PassError, TensorType, Type, Value};
use dojo_runtime::Target;

pub struct SplitBatch {
    pub mesh: String,
    /// Parts to split into (at most the target's chips and the batch); `None`: by the rule
    /// in the module doc.
    pub parts: Option<usize>,
}

impl Pass for SplitBatch {
    fn name(&self) -> &'static str {
        "split-batch"
    }

    fn run(&self, module: &mut Module) -> Result<(), PassError> {
        let target = Target::preset(&self.mesh).map_err(|e| PassError::Invalid(e.to_string()))?;
        let chips = (target.chip_grid.0 * target.chip_grid.1) as usize;
        if let Some(p) = self.parts {
            if p == 0 || p > chips {
                return Err(PassError::Invalid(format!(
                    "split-batch: parts={p} does not fit target '{}' ({chips} chip(s)): use 1 to {chips}",
                    self.mesh
                )));
            }
        }
        for func in &mut module.funcs {
            let note = match analyze(func) {
                Ok(b) => {
                    let parts = self.parts.unwrap_or_else(|| b.n.div_ceil(b.n.div_ceil(chips)));
                    if parts > b.n {
                        return Err(PassError::Invalid(format!(
                            "split-batch: @{}: parts={parts} exceeds the batch of {}",
                            func.name, b.n
                        )));
                    }
                    if parts >= 2 {
                        *func = split(func, &b, parts);
                    }
                    format!("{parts} part(s) of a batch of {}", b.n)
                }
                Err(why) if self.parts.is_some_and(|p| p > 1) => {
                    return Err(PassError::Invalid(format!("split-batch: @{} cannot be split: {why}", func.name)));
                }
                Err(why) => format!("not split: {why}"),
            };
            func.attrs.retain(|(k, _)| k != "dojo.split");
            func.attrs.push(attr("dojo.split", Attr::Str(note)));
            func.attrs.sort_by(|a, b| a.0.cmp(&b.0));
        }
        Ok(())
    }
}

/// The batch of a function: its size and, per value, the dim carrying it (a dim of size
/// `N * q` whose outer factor is the sample; `None`: the value does not depend on it).
struct Batch {
    n: usize,
    dims: Vec<Option<usize>>,
    /// Arguments the batch comes in through.
    seeds: Vec<Value>,
}

fn analyze(f: &Func) -> Result<Batch, String> {
    let mut seeds: Vec<Value> = Vec::new();
    for op in &f.ops {
        if op.name == "aten.convolution.default" {
            if let Some(&x) = op.operands.first() {
                if x.index() < f.num_args && !seeds.contains(&x) {
                    seeds.push(x);
                }
            }
        }
    }
    if seeds.is_empty() {
        return Err("no argument is a convolution's input (the batch is only found that way)".into());
    }
    seeds.sort();
    let shape = |v: Value| f.tensor(v).map(|t| t.shape.clone()).unwrap_or_default();
    let n = shape(seeds[0]).first().copied().unwrap_or(0);
    if let Some(s) = seeds.iter().find(|&&s| shape(s).first() != Some(&n)) {
        return Err(format!("the convolution inputs' batches differ (%arg{} has {:?})", s.0, shape(*s)));
    }
    if n < 2 {
        return Err(format!("the batch is {n}"));
    }
    let mut dims = vec![None; f.value_types.len()];
    for &s in &seeds {
        dims[s.index()] = Some(0);
    }
    for (i, op) in f.ops.iter().enumerate() {
        let b: Vec<Option<usize>> = op.operands.iter().map(|v| dims[v.index()]).collect();
        if b.iter().all(Option::is_none) {
            continue;
        }
        let out = rule(f, op, &b, n).map_err(|e| format!("op #{i} '{}': {e}", op.name))?;
        for (k, d) in out.into_iter().enumerate() {
            let r = op.result(k);
            if let Some(d) = d {
                if shape(r).get(d).is_none_or(|&s| s % n != 0) {
                    return Err(format!("op #{i} '{}': result #{k} {:?} has no batch at dim {d}", op.name, shape(r)));
                }
            }
            dims[r.index()] = d;
        }
    }
    Ok(Batch { n, dims, seeds })
}

/// Ops applied to each sample alone, their outputs batched at the input's dim 0 (all of
/// them; `_native_batch_norm_legit_no_training` has two empty extra results).
const PER_SAMPLE: &[&str] = &[
    "aten.convolution.default",
    "aten.max_pool2d_with_indices.default",
    "aten.avg_pool2d.default",
    "aten._adaptive_avg_pool2d.default",
];

/// Elementwise ops (with broadcasting): the batch stays where it is.
const ELEMENTWISE: &[&str] = &[
    "aten.relu.default",
    "aten.add.Tensor",
    "aten.sub.Tensor",
    "aten.mul.Tensor",
    "aten.div.Tensor",
    "aten.sigmoid.default",
    "aten.tanh.default",
    "aten.neg.default",
    "aten.exp.default",
    "aten.rsqrt.default",
    "aten.sqrt.default",
    "aten.hardtanh.default",
    "aten.clamp_min.default",
    "aten.clone.default",
    "aten.alias.default",
    "aten.where.self",
];

/// The batch dims of `op`'s results given its operands' (`b`, at least one `Some`), or why
/// the op mixes samples.
fn rule(f: &Func, op: &Op, b: &[Option<usize>], n: usize) -> Result<Vec<Option<usize>>, String> {
    let shape = |i: usize| f.tensor(op.operands[i]).map(|t| t.shape.clone()).unwrap_or_default();
    let rshape = |k: usize| f.tensor(op.result(k)).map(|t| t.shape.clone()).unwrap_or_default();
    let ints = |k: &str| op.attr(k).and_then(Attr::as_ints).map(<[i64]>::to_vec);
    let norm = |d: i64, rank: usize| if d < 0 { d + rank as i64 } else { d } as usize;
    // Only operand `i` is batched, at dim `d`.
    let only = |i: usize, d: usize| b.iter().enumerate().all(|(j, x)| if j == i { *x == Some(d) } else { x.is_none() });
    let name = op.name.as_str();
    if PER_SAMPLE.contains(&name) {
        if !only(0, 0) {
            return Err("only its input may depend on the batch, at dim 0".into());
        }
        return Ok(vec![Some(0); op.num_results]);
    }
    if name == "aten._native_batch_norm_legit_no_training.default" {
        if !only(0, 0) {
            return Err("only its input may depend on the batch, at dim 0".into());
        }
        if (1..op.num_results).any(|k| rshape(k).iter().product::<usize>() != 0) {
            return Err("its saved statistics are not empty".into());
        }
        // The empty statistics do not depend on the batch (the first part's are used).
        let mut out = vec![None; op.num_results];
        out[0] = Some(0);
        return Ok(out);
    }
    if ELEMENTWISE.contains(&name) {
        let r = rshape(0);
        let mut at = None;
        for (i, x) in b.iter().enumerate() {
            let s = shape(i);
            let lead = r.len() - s.len();
            match x {
                Some(d) if at.is_some_and(|a| a != d + lead) => return Err("its operands carry the batch at different dims".into()),
                Some(d) => at = Some(d + lead),
                None => {}
            }
        }
        let at = at.ok_or("no batched operand")?;
        for (i, x) in b.iter().enumerate() {
            let s = shape(i);
            let lead = r.len() - s.len();
            if x.is_none() && at >= lead && s[at - lead] != 1 {
                return Err(format!("operand #{i} {s:?} does not depend on the batch but spans its dim {at}"));
            }
        }
        return Ok(vec![Some(at)]);
    }
    match name {
        "aten.mean.dim" | "aten.sum.dim_IntList" | "aten.amax.default" => {
            let d = b[0].ok_or("only its input may depend on the batch")?;
            let rank = shape(0).len();
            let dims: Vec<usize> = ints("dim").ok_or("it reduces every dim")?.iter().map(|&x| norm(x, rank)).collect();
            if dims.is_empty() || dims.contains(&d) {
                return Err("it reduces over the batch".into());
            }
            let keep = op.attr("keepdim").and_then(Attr::as_bool).unwrap_or(false);
            Ok(vec![Some(if keep { d } else { d - dims.iter().filter(|&&x| x < d).count() })])
        }
        "aten.view.default" | "aten.reshape.default" | "aten._unsafe_view.default" => {
            let d = b[0].ok_or("only its input may depend on the batch")?;
            let (s, r) = (shape(0), rshape(0));
            let pre: usize = s[..d].iter().product();
            // The samples stay contiguous blocks: the dims before the batch keep their
            // product, and the batch's dim (times what merges into it) is a whole dim.
            (0..r.len())
                .find(|&e| r[..e].iter().product::<usize>() == pre && r[e] % n == 0 && r[e] >= n)
                .map(|e| vec![Some(e)])
                .ok_or_else(|| format!("it reshapes {s:?} to {r:?}, cutting the batch at dim {d}"))
        }
        "aten.permute.default" => {
            let d = b[0].ok_or("only its input may depend on the batch")?;
            let rank = shape(0).len();
            let perm = ints("dims").ok_or("no 'dims'")?;
            perm.iter().position(|&p| norm(p, rank) == d).map(|e| vec![Some(e)]).ok_or_else(|| "bad 'dims'".to_string())
        }
        "aten.t.default" => {
            let d = b[0].ok_or("only its input may depend on the batch")?;
            Ok(vec![Some(if shape(0).len() == 2 { 1 - d } else { d })])
        }
        // The bias is a row (or broadcast from one).
        "aten.addmm.default" if only(1, 0) && (shape(0).len() < 2 || shape(0)[0] == 1) => Ok(vec![Some(0)]),
        "aten.mm.default" if only(0, 0) => Ok(vec![Some(0)]),
        _ => Err(format!("no batch rule for it (operand batch dims {b:?})")),
    }
}

/// The function computed in `parts` copies over contiguous slices of the batch (module doc).
fn split(f: &Func, b: &Batch, parts: usize) -> Func {
    let mut out = Func::new(f.name.clone(), f.arg_types().to_vec());
    out.attrs = f.attrs.clone();
    let n = b.n;
    // Part `s`'s samples: (first, count).
    let share = |s: usize| dojo_compiler::layout::chunk(n, parts, s);
    // A batched type for part `s`: the batch dim's `N * q` elements become `len * q`.
    let part_type = |t: &Type, d: Option<usize>, s: usize| -> Type {
        match (t, d) {
            (Type::Tensor(t), Some(d)) => {
                let mut shape = t.shape.clone();
                shape[d] = shape[d] / n * share(s).1;
                Type::Tensor(TensorType::new(shape, t.elem))
            }
            (t, _) => t.clone(),
        }
    };
    let mut shared: Vec<Option<Value>> = vec![None; f.value_types.len()];
    for a in f.args() {
        shared[a.index()] = Some(a);
    }
    // Each part's values: its slices of the batched ones, and its own copies of the others
    // (a weight's transpose computed on every chip rather than fetched from the first; dce
    // drops the copies nothing uses).
    let mut part: Vec<Vec<Option<Value>>> = vec![shared.clone(); parts];
    for &x in &b.seeds {
        let t = f.tensor(x).cloned().unwrap_or_else(|| TensorType::new(vec![], dojo_compiler::ElemType::F32));
        for (s, p) in part.iter_mut().enumerate() {
            let ty = part_type(&Type::Tensor(t.clone()), Some(0), s);
            let mut offsets = vec![0i64; t.rank()];
            offsets[0] = share(s).0 as i64;
            let attrs = vec![attr("offsets", Attr::Ints(offsets)), attr("strides", Attr::Ints(vec![1; t.rank()]))];
            let sliced = out.push("dojo.slice", vec![x], attrs, vec![ty.clone()]);
            p[x.index()] = Some(out.push("dojo.on_chip", vec![sliced], vec![attr("chip", Attr::Int(s as i64))], vec![ty]));
        }
    }
    for op in &f.ops {
        let batched = op.operands.iter().any(|v| b.dims[v.index()].is_some());
        if !batched {
            for values in std::iter::once(&mut shared).chain(part.iter_mut()) {
                let operands = op.operands.iter().map(|v| values[v.index()].expect("operand before use")).collect();
                let types = op.results().map(|r| f.ty(r).clone()).collect();
                let first = out.push(op.name.clone(), operands, op.attrs.clone(), types);
                for k in 0..op.num_results {
                    values[op.result(k).index()] = Some(Value(first.0 + k as u32));
                }
            }
            continue;
        }
        // One copy per part, next to each other: the chips then start each layer together
        // (the host serves loads in program order).
        for (s, p) in part.iter_mut().enumerate() {
            let operands = op.operands.iter().map(|v| p[v.index()].expect("operand before use")).collect();
            let types = op.results().map(|r| part_type(f.ty(r), b.dims[r.index()], s)).collect();
            let mut attrs = op.attrs.clone();
            if let (Some(d), Some(pos)) = (b.dims[op.result(0).index()], attrs.iter().position(|(k, _)| k == "size")) {
                if let Attr::Ints(size) = &mut attrs[pos].1 {
                    if let Some(x) = size.get_mut(d).filter(|x| **x > 0) {
                        *x = *x / n as i64 * share(s).1 as i64;
                    }
                }
            }
            let first = out.push(op.name.clone(), operands, attrs, types);
            for k in 0..op.num_results {
                let (r, v) = (op.result(k), Value(first.0 + k as u32));
                p[r.index()] = Some(v);
                if b.dims[r.index()].is_none() && s == 0 {
                    shared[r.index()] = Some(v);
                }
            }
        }
    }
    let mut rets = Vec::new();
    for &r in &f.returns {
        rets.push(match b.dims[r.index()] {
            Some(d) => {
                let vs: Vec<Value> = part.iter().map(|p| p[r.index()].expect("result computed")).collect();
                out.push("dojo.concat", vs, vec![attr("dim", Attr::Int(d as i64))], vec![f.ty(r).clone()])
            }
            None => shared[r.index()].expect("result computed"),
        });
    }
    out.set_returns(rets);
    out
}
