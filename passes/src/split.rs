//! `split-batch{mesh=<preset> parts=<n>}`: data parallelism over the chips of a multi-chip
//! target, on the captured `aten.*` graph (before legalization).
//!
//! The function is copied once per part, each copy computing a contiguous slice of the batch
//! on its own chip:
//! - the batch `N` is dim 0 of the data inputs of convolutions (and of their and max
//!   pooling's backward) and of embeddings' ids (through reshapes keeping dim 0); other
//!   arguments with `N` rows are taken as batched too, unless an op rejects that (then the
//!   arguments it came from are taken whole and the analysis runs again);
//! - each part slices its samples of a batched argument (`dojo.slice`) and marks them
//!   `dojo.on_chip {chip}`, so `lower-to-d1` places everything computed from them on that chip;
//! - every value is whole (the same for every part: weights, their transposes), batched at a
//!   dim (a dim of `N * q` elements whose outer factor is the sample), or partial (a sum over
//!   the batch: each part holds its samples' share), followed through the ops by per-op rules
//!   (`rule`). A partial value is summed over the parts as soon as it is computed (small
//!   shares stacked and reduced, `dojo.concat` + `dojo.reduce_sum`; larger ones added in
//!   pairs across chips, a step at a time for one that is only returned, see `step_pairs`);
//!   a variance over the batch (training batch norm) gathers each part's sum and squared
//!   deviations from its own mean once (Chan et al.'s combination; two sums, the mean then
//!   the deviations from it, when shares differ or are large);
//!   a whole operand of an elementwise or per-sample op spanning the batch is sliced per part;
//! - whole ops are copied per part too (dce drops the copies nothing uses), so each chip
//!   computes its own weight transposes; batched results are `dojo.concat`s of the parts
//!   (a once value, below, is returned as it is);
//! - an op on a table larger than a chip holds (GPT-2's 50257 words: the lookup, the logits'
//!   matmul, their gradients), and views and large results of such ops, run once for the
//!   whole batch on the whole grid (`OpPlan::once`), the parts slicing what they use.
//!
//! An op without a rule for how it treats the batch leaves the function whole; the function's
//! attribute `dojo.split` says which happened and why. Parts compute what the whole graph
//! computes for their samples, up to the order of f32 sums (matmul K steps are chosen per
//! shape; sums over the batch add the parts' shares). The number of parts is the fewest that
//! give each chip the smallest share: `ceil(N / ceil(N / chips))` (batch 32 on a tile's 25
//! chips: 16 parts of 2). Parts get a block of chips each when the grid has them to spare
//! (`part_chips`, the function's attribute `dojo.part_chips`); `lower-to-d1` may give them
//! equal rectangles of the whole grid instead (see `Lowering::areas`).

use dojo_compiler::dialect::check_perm;
use dojo_compiler::{attr, Attr, ElemType, Func, Module, Op, Pass, PassError, TensorType, Type, Value};
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
            let note = match analyze(func, crate::lower::block_table_max_bytes(&target)) {
                Ok(b) => {
                    let parts = self.parts.unwrap_or_else(|| b.n.div_ceil(b.n.div_ceil(chips)));
                    if parts > b.n {
                        return Err(PassError::Invalid(format!(
                            "split-batch: @{}: parts={parts} exceeds the batch of {}",
                            func.name, b.n
                        )));
                    }
                    let mut note = format!("{parts} part(s) of a batch of {}", b.n);
                    if parts >= 2 {
                        *func = split(func, &b, parts);
                        // Several chips per part where the grid has them to spare.
                        let (h, w) = part_chips(target.chip_grid, parts);
                        if (h, w) != (1, 1) {
                            func.attrs.retain(|(k, _)| k != "dojo.part_chips");
                            func.attrs.push(attr("dojo.part_chips", Attr::Ints(vec![i64::from(h), i64::from(w)])));
                            note += &format!(", {h} x {w} chips each");
                        }
                    }
                    note
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

/// The block of `h x w` chips each of `parts` parts gets on a `cr x cc` chip grid (part `k`
/// the `k`-th block in row-major order, `lower-to-d1`'s `dojo.part_chips`): the most chips
/// for which `parts` blocks fit, the squarer block on a tie (GPT-2 at batch 8 on a tile's 5 x
/// 5 chips: 1 x 2). A part's ops then spread over its chips as a multi-chip target's do
/// over the whole grid. Measured at batch 8 on a tile, one chip per part against 1 x 2:
/// GPT-2 124M inference 7.783 -> 5.410 ms, backward 19.62 -> 14.57 ms; GPT-2 (1000 words,
/// seq 512) backward 15.95 -> 12.97 ms; resnet50 backward 2.90 -> 2.57 ms; but GPT-2 (1000
/// words, seq 128) backward 6.08 -> 6.78 ms (its ops are small for two chips).
fn part_chips((cr, cc): (u32, u32), parts: usize) -> (u32, u32) {
    let mut best = (1, 1);
    for h in 1..=cr {
        for w in 1..=cc {
            let fits = ((cr / h) * (cc / w)) as usize >= parts;
            let better = h * w > best.0 * best.1 || (h * w == best.0 * best.1 && h.abs_diff(w) < best.0.abs_diff(best.1));
            if fits && better {
                best = (h, w);
            }
        }
    }
    best
}

/// Largest partial sum (bytes) the parts' shares are gathered for in one step; larger ones
/// are added in pairs (see `split`'s `all_reduce`).
const GATHER_MAX_BYTES: u64 = 64 * 1024;

/// How a value depends on the batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum B {
    /// The same for every part.
    Whole,
    /// Batched at this dim (`N * q` elements, the sample its outer factor).
    At(usize),
    /// A sum over the batch: each part holds its samples' share.
    Partial,
}

/// What the split does with one op whose operands depend on the batch.
#[derive(Clone, Debug)]
struct OpPlan {
    /// Per result.
    results: Vec<B>,
    /// Per operand: a whole value sliced at this dim for each part (an elementwise or
    /// per-sample op pairs it with the batch position by position).
    slice: Vec<Option<usize>>,
    /// `var_mean` over the batch: from the parts' statistics (`var_mean`).
    var_mean: bool,
    /// Computed once for the whole batch, on the whole grid: its batched operands joined, its
    /// batched results sliced per part (its partial ones are whole: the sum itself). For ops
    /// on a table that does not fit one chip (GPT-2's 50257 words: 154 MB), see `propagate`.
    once: bool,
}

/// The batch of a function: its size, how each value depends on it, each op's plan (None:
/// no batched operand; partial operands are summed first) and the batched arguments.
struct Batch {
    n: usize,
    kinds: Vec<B>,
    plans: Vec<Option<OpPlan>>,
    seeds: Vec<Value>,
}

/// Arguments certainly batched at dim 0: data inputs of convolutions, their backward and
/// max pooling's backward, and the token ids of embeddings (through reshapes).
fn data_args(f: &Func) -> Vec<Value> {
    let defs = f.def_ops();
    let mut seeds: Vec<Value> = Vec::new();
    for op in &f.ops {
        let data: &[usize] = match op.name.as_str() {
            "aten.convolution.default" => &[0],
            "aten.convolution_backward.default" => &[0, 1],
            "aten.max_pool2d_with_indices_backward.default" => &[0, 1, 2],
            "aten.embedding.default" | "aten.embedding_dense_backward.default" => &[1],
            _ => &[],
        };
        for &i in data {
            let Some(mut x) = op.operands.get(i).copied() else { continue };
            // Back through reshapes that keep dim 0 (`view(ids, [-1, 512])`).
            while let Some(d) = defs.get(x.index()).copied().flatten() {
                let o = &f.ops[d];
                let same_rows = f.tensor(o.result(0)).and_then(|t| t.shape.first()) == o.operands.first().and_then(|&v| f.tensor(v)).and_then(|t| t.shape.first());
                if !RESHAPES.contains(&o.name.as_str()) || !same_rows {
                    break;
                }
                x = o.operands[0];
            }
            if x.index() < f.num_args && !seeds.contains(&x) {
                seeds.push(x);
            }
        }
    }
    seeds.sort();
    seeds
}

/// `table_max`: the largest table a chip holds for one op (larger ones: `OpPlan::once`).
fn analyze(f: &Func, table_max: u64) -> Result<Batch, String> {
    let mut certain = data_args(f);
    let shape = |v: Value| f.tensor(v).map(|t| t.shape.clone()).unwrap_or_default();
    // The batch is the largest dim 0 among them; the others (a backward's position ids,
    // [1, 512]) are not batched.
    let n = certain.iter().filter_map(|&s| shape(s).first().copied()).max().ok_or("no argument is a convolution's input or an embedding's ids (the batch is only found that way)")?;
    certain.retain(|&s| shape(s).first() == Some(&n));
    if n < 2 {
        return Err(format!("the batch is {n}"));
    }
    // Other arguments with N rows (saved activations, gradients) are batched unless an op
    // rejects them: then the ones its operands come from are taken whole, and again.
    let mut maybe: Vec<Value> = f.args().filter(|a| !certain.contains(a) && shape(*a).first() == Some(&n)).collect();
    let defs = f.def_ops();
    loop {
        let seeds: Vec<Value> = certain.iter().chain(&maybe).copied().collect();
        match propagate(f, n, &seeds, table_max) {
            Ok((kinds, plans)) => {
                let mut seeds = seeds;
                seeds.sort();
                return Ok(Batch { n, kinds, plans, seeds });
            }
            Err((i, why)) => {
                // The uncertain arguments the failing op's operands come from.
                let mut from = Vec::new();
                let mut stack: Vec<Value> = f.ops[i].operands.clone();
                let mut seen = std::collections::HashSet::new();
                while let Some(v) = stack.pop() {
                    if !seen.insert(v) {
                        continue;
                    }
                    match defs.get(v.index()).copied().flatten() {
                        Some(d) => stack.extend(f.ops[d].operands.iter().copied()),
                        None if maybe.contains(&v) => from.push(v),
                        None => {}
                    }
                }
                if from.is_empty() {
                    return Err(format!("op #{i} '{}': {why}", f.ops[i].name));
                }
                maybe.retain(|a| !from.contains(a));
            }
        }
    }
}

type Plans = (Vec<B>, Vec<Option<OpPlan>>);

/// How every value depends on the batch, given the batched arguments; or the first op that
/// rejects its operands, and why.
fn propagate(f: &Func, n: usize, seeds: &[Value], table_max: u64) -> Result<Plans, (usize, String)> {
    let shape = |v: Value| f.tensor(v).map(|t| t.shape.clone()).unwrap_or_default();
    let mut kinds = vec![B::Whole; f.value_types.len()];
    for &s in seeds {
        kinds[s.index()] = B::At(0);
    }
    let mut plans = vec![None; f.ops.len()];
    // Values computed once (`OpPlan::once`).
    let mut once = vec![false; f.value_types.len()];
    for (i, op) in f.ops.iter().enumerate() {
        let b: Vec<B> = op.operands.iter().map(|v| kinds[v.index()]).collect();
        if !b.iter().any(|k| matches!(k, B::At(_))) {
            continue;
        }
        let mut plan = rule(f, op, &b, n).map_err(|e| (i, e))?;
        // Once, on the whole grid: an op with a whole operand or a partial result larger than
        // one chip holds (GPT-2's 50257-word table, 154 MB: its lookup, the logits' matmul,
        // their gradients), and a view or an op with such a result of once values alone (the
        // logits' views and softmax).
        let big = |v: Value| f.tensor(v).is_some_and(|t| (t.numel() * t.elem.bytes()) as u64 > table_max);
        let batched = |v: &Value| matches!(kinds[v.index()], B::At(_));
        // (A whole operand the plan slices per part is not whole on a chip: GPT-2's saved
        // attention probabilities, [96, 512, 512], 100 MB.)
        let whole_big = op.operands.iter().zip(&plan.slice).any(|(v, cut)| !batched(v) && cut.is_none() && big(*v));
        let partial_big = plan.results.iter().zip(op.results()).any(|(k, r)| *k == B::Partial && big(r));
        let from_once = op.operands.iter().filter(|v| batched(v)).all(|v| once[v.index()]) && (RESHAPES.contains(&op.name.as_str()) || VIEWS.contains(&op.name.as_str()) || op.results().any(big));
        if whole_big || partial_big || from_once {
            plan.once = true;
            plan.var_mean = false;
            plan.results.iter_mut().filter(|k| **k == B::Partial).for_each(|k| *k = B::Whole);
            op.results().for_each(|r| once[r.index()] = true);
        }
        for (k, &d) in plan.results.iter().enumerate() {
            let r = op.result(k);
            if let B::At(d) = d {
                if shape(r).get(d).is_none_or(|&s| s % n != 0) {
                    return Err((i, format!("result #{k} {:?} has no batch at dim {d}", shape(r))));
                }
            }
            // An empty result (unused statistics, a gradient not asked for) is whole.
            kinds[r.index()] = if shape(r).contains(&0) { B::Whole } else { d };
        }
        plans[i] = Some(plan);
    }
    Ok((kinds, plans))
}

/// Reshapes (the same elements in row-major order, another shape).
const RESHAPES: &[&str] = &["aten.view.default", "aten.reshape.default", "aten._unsafe_view.default"];

/// Ops that only view their operand's elements in another shape or order (besides
/// `RESHAPES`).
const VIEWS: &[&str] = &[
    "aten.permute.default",
    "aten.t.default",
    "aten.unsqueeze.default",
    "aten.squeeze.dims",
    "aten.expand.default",
];

/// Ops applied to each sample alone: `(name, data operands)`, their results batched at dim 0
/// (`convolution_backward`'s weight and bias gradients: partial sums).
const PER_SAMPLE: &[(&str, &[usize])] = &[
    ("aten.convolution.default", &[0]),
    ("aten.convolution_backward.default", &[0, 1]),
    ("aten.max_pool2d_with_indices.default", &[0]),
    ("aten.max_pool2d_with_indices_backward.default", &[0, 1, 2]),
    ("aten.avg_pool2d.default", &[0]),
    ("aten._adaptive_avg_pool2d.default", &[0]),
    ("aten._native_batch_norm_legit_no_training.default", &[0]),
];

/// Elementwise ops (with broadcasting): the batch stays where it is.
const ELEMENTWISE: &[&str] = &[
    "aten.relu.default",
    "aten.add.Tensor",
    "aten.sub.Tensor",
    "aten.mul.Tensor",
    "aten.div.Tensor",
    "aten.div.Scalar",
    "aten.mul.Scalar",
    "aten.sigmoid.default",
    "aten.tanh.default",
    "aten.neg.default",
    "aten.exp.default",
    "aten.rsqrt.default",
    "aten.sqrt.default",
    "aten.pow.Tensor_Scalar",
    "aten.hardtanh.default",
    "aten.clamp_min.default",
    "aten.clone.default",
    "aten.alias.default",
    "aten.where.self",
    "aten.bitwise_and.Tensor",
    "aten.eq.Tensor",
    "aten.le.Tensor",
    "aten.lt.Tensor",
    "aten.ne.Scalar",
    "aten.isinf.default",
    "aten.abs.default",
    "aten.log.default",
    "aten.gelu.default",
    "aten.full_like.default",
    "aten.logical_not.default",
    "aten._to_copy.default",
    // Each part draws its own uniform values (an op of its own, a stream of its own).
    "aten.rand_like.default",
    "aten.le.Scalar",
    "aten.lt.Scalar",
    "aten.ge.Scalar",
    "aten.gt.Scalar",
    "aten.eq.Scalar",
    "aten.threshold_backward.default",
];

/// Dim `d` (negative: from the end) of a rank-`rank` tensor, if it exists.
fn norm(d: i64, rank: usize) -> Result<usize, String> {
    let r = if d < 0 { d + rank as i64 } else { d };
    usize::try_from(r).ok().filter(|&r| r < rank).ok_or_else(|| format!("dim {d} is out of range for rank {rank}"))
}

/// The dims a reduction's `dim` attribute names (a list or one integer; none: all), sorted.
fn reduced_dims(op: &Op, rank: usize) -> Result<Vec<usize>, String> {
    let given: Vec<i64> = match op.attr("dim") {
        Some(Attr::Ints(v)) => v.clone(),
        Some(Attr::Int(d)) => vec![*d],
        _ => vec![],
    };
    let mut dims = if given.is_empty() { (0..rank).collect() } else { given.iter().map(|&d| norm(d, rank)).collect::<Result<Vec<_>, _>>()? };
    dims.sort_unstable();
    dims.dedup();
    Ok(dims)
}

/// The plan of an op with at least one batched operand (`b`; a partial operand is summed
/// first, so it counts as whole), or why the op mixes samples.
fn rule(f: &Func, op: &Op, b: &[B], n: usize) -> Result<OpPlan, String> {
    use B::{At, Partial, Whole};
    let b: Vec<B> = b.iter().map(|k| if *k == Partial { Whole } else { *k }).collect();
    let shape = |i: usize| f.tensor(op.operands[i]).map(|t| t.shape.clone()).unwrap_or_default();
    let rshape = |k: usize| f.tensor(op.result(k)).map(|t| t.shape.clone()).unwrap_or_default();
    let ints = |k: &str| op.attr(k).and_then(Attr::as_ints).map(<[i64]>::to_vec);
    let at = |i: usize| match b[i] {
        At(d) => Some(d),
        _ => None,
    };
    if op.num_results == 0 {
        return Err("it has no results".into());
    }
    let mut plan = OpPlan { results: vec![Whole; op.num_results], slice: vec![None; op.operands.len()], var_mean: false, once: false };
    let name = op.name.as_str();
    if let Some((_, data)) = PER_SAMPLE.iter().find(|(k, _)| *k == name) {
        for i in 0..op.operands.len() {
            match (data.contains(&i), b[i]) {
                (true, At(0)) | (false, Whole) => {}
                // A whole operand paired sample by sample with the batched ones: its slices.
                (true, Whole) if shape(i).first() == Some(&n) => plan.slice[i] = Some(0),
                _ => return Err(format!("operand #{i} must be {} (its batch dims: {b:?})", if data.contains(&i) { "batched at dim 0" } else { "whole" })),
            }
        }
        plan.results = vec![At(0); op.num_results];
        if name == "aten.convolution_backward.default" {
            // Results are the gradients the mask asks for, in order; the weight's and the
            // bias's sum over the samples.
            let mask: Vec<bool> = match op.attr("output_mask") {
                Some(Attr::Array(v)) => v.iter().map(|a| a.as_bool().unwrap_or(true)).collect(),
                _ => vec![true; 3],
            };
            let wanted = (0..3).filter(|&k| mask.get(k).copied().unwrap_or(true));
            plan.results = wanted.map(|k| if k == 0 { At(0) } else { Partial }).collect();
            if plan.results.len() != op.num_results {
                return Err("its results do not match its output_mask".into());
            }
        } else if name == "aten._native_batch_norm_legit_no_training.default" {
            if (1..op.num_results).any(|k| !rshape(k).contains(&0)) {
                return Err("its saved statistics are not empty".into());
            }
        }
        return Ok(plan);
    }
    if ELEMENTWISE.contains(&name) {
        let r = rshape(0);
        let mut pos = None;
        for (i, x) in b.iter().enumerate() {
            let lead = r.len().checked_sub(shape(i).len()).ok_or("an operand has a higher rank than the result")?;
            match x {
                At(d) if pos.is_some_and(|a| a != d + lead) => return Err("its operands carry the batch at different dims".into()),
                At(d) => pos = Some(d + lead),
                _ => {}
            }
        }
        let pos = pos.ok_or("no batched operand")?;
        if pos >= r.len() {
            return Err(format!("the result {r:?} has no dim {pos}"));
        }
        for (i, x) in b.iter().enumerate() {
            let s = shape(i);
            let lead = r.len() - s.len();
            if *x == Whole && pos >= lead && s[pos - lead] != 1 {
                if s[pos - lead] != r[pos] {
                    return Err(format!("operand #{i} {s:?} does not depend on the batch but spans its dim {pos}"));
                }
                plan.slice[i] = Some(pos - lead);
            }
        }
        plan.results[0] = At(pos);
        return Ok(plan);
    }
    let only = |i: usize| (0..b.len()).all(|j| j == i || b[j] == Whole);
    let d0 = at(0);
    plan.results[0] = match name {
        "aten.mean.dim" | "aten.sum.dim_IntList" | "aten.amax.default" | "aten.any.dim" | "aten.any.dims" | "aten.var_mean.correction" => {
            let d = d0.filter(|_| only(0)).ok_or("only its input may depend on the batch")?;
            let dims = reduced_dims(op, shape(0).len())?;
            let keep = op.attr("keepdim").and_then(Attr::as_bool).unwrap_or(false);
            let kept = At(if keep { d } else { d - dims.iter().filter(|&&x| x < d).count() });
            match (name, dims.contains(&d)) {
                ("aten.sum.dim_IntList", true) => Partial,
                ("aten.var_mean.correction", true) => {
                    plan.var_mean = true;
                    Whole
                }
                (_, true) => return Err("it reduces over the batch".into()),
                ("aten.var_mean.correction", false) => {
                    plan.results[1] = kept;
                    kept
                }
                _ => kept,
            }
        }
        _ if RESHAPES.contains(&name) => {
            let d = d0.ok_or("only its input may depend on the batch")?;
            let (s, r) = (shape(0), rshape(0));
            let pre: usize = s[..d].iter().product();
            // The samples stay contiguous blocks: the dims before the batch keep their
            // product, and the batch's dim (times what merges into it) is a whole dim.
            (0..r.len())
                .find(|&e| r[..e].iter().product::<usize>() == pre && r[e] % n == 0 && r[e] >= n)
                .map(At)
                .ok_or_else(|| format!("it reshapes {s:?} to {r:?}, cutting the batch at dim {d}"))?
        }
        "aten.expand.default" => {
            let lead = rshape(0).len().checked_sub(shape(0).len()).ok_or("it drops dims")?;
            At(d0.ok_or("only its input may depend on the batch")? + lead)
        }
        // Along another dim than the batch's: the batch stays where it is (every result).
        "aten.embedding.default" if b[0] == Whole => At(at(1).ok_or("its ids must carry the batch")?),
        // The table's gradient sums the rows of every sample's ids.
        "aten.embedding_dense_backward.default" if at(0).is_some() && at(1).is_some() => Partial,
        "aten.cat.default" => {
            let d = b.iter().find_map(|k| if let At(d) = k { Some(*d) } else { None }).ok_or("no batched operand")?;
            let r = rshape(0);
            let dim = norm(op.attr("dim").and_then(Attr::as_int).unwrap_or(0), r.len())?;
            if dim == d {
                return Err("it joins along the batch dim".into());
            }
            for (i, k) in b.iter().enumerate() {
                match k {
                    At(e) if *e == d => {}
                    Whole if shape(i).get(d) == r.get(d) && shape(i).len() == r.len() => plan.slice[i] = Some(d),
                    _ => return Err(format!("operand #{i} does not carry the batch at dim {d}")),
                }
            }
            At(d)
        }
        "aten.slice.Tensor" | "aten.split_with_sizes.default" | "aten.split.Tensor" | "aten._softmax.default" | "aten._log_softmax.default" | "aten.cumsum.default" => {
            let d = d0.filter(|_| only(0)).ok_or("only its input may depend on the batch")?;
            let dim = norm(op.attr("dim").and_then(Attr::as_int).unwrap_or(0), shape(0).len())?;
            if dim == d {
                return Err("it works along the batch dim".into());
            }
            plan.results = vec![At(d); op.num_results];
            At(d)
        }
        "aten.permute.default" => {
            let d = d0.ok_or("only its input may depend on the batch")?;
            let perm = ints("dims").ok_or("no 'dims'")?;
            At(perm.iter().position(|&p| norm(p, shape(0).len()) == Ok(d)).ok_or("bad 'dims'")?)
        }
        "aten.t.default" => At(if shape(0).len() == 2 { 1 - d0.ok_or("no batch")? } else { d0.ok_or("no batch")? }),
        "aten.unsqueeze.default" => {
            let d = d0.ok_or("no batch")?;
            let dim = norm(op.attr("dim").and_then(Attr::as_int).ok_or("no 'dim'")?, shape(0).len() + 1)?;
            At(if dim <= d { d + 1 } else { d })
        }
        "aten.squeeze.dims" => {
            let (d, s) = (d0.ok_or("no batch")?, shape(0));
            if ints("dim").is_none_or(|v| v.is_empty()) {
                return Err("no 'dim' list".into());
            }
            let dims = reduced_dims(op, s.len())?;
            At(d - dims.iter().filter(|&&x| x < d && s[x] == 1).count())
        }
        // The bias is a row (or broadcast from one).
        "aten.addmm.default" if b[1] == At(0) && only(1) && (shape(0).len() < 2 || shape(0).first() == Some(&1)) => At(0),
        "aten.mm.default" => match (b[0], b[1]) {
            (At(0), Whole) => At(0),
            (Whole, At(1)) => At(1),
            // The contraction runs over the batch: each part's product is its share.
            (At(1), At(0)) => Partial,
            (Whole, At(0)) if shape(0).get(1) == shape(1).first() => {
                plan.slice[0] = Some(1);
                Partial
            }
            (At(1), Whole) if shape(1).first() == shape(0).get(1) => {
                plan.slice[1] = Some(0);
                Partial
            }
            _ => return Err(format!("no batch rule for its operands' batch dims {b:?}")),
        },
        "aten.bmm.default" => match (b[0], b[1]) {
            (At(0), At(0)) => At(0),
            (At(0), Whole) if shape(1).first() == shape(0).first() => {
                plan.slice[1] = Some(0);
                At(0)
            }
            (Whole, At(0)) if shape(0).first() == shape(1).first() => {
                plan.slice[0] = Some(0);
                At(0)
            }
            _ => return Err(format!("no batch rule for its operands' batch dims {b:?}")),
        },
        _ => return Err(format!("no batch rule for it (operand batch dims {b:?})")),
    };
    Ok(plan)
}

/// The function computed in `parts` copies over contiguous slices of the batch (module doc).
fn split(f: &Func, b: &Batch, parts: usize) -> Func {
    let mut out = Func::new(f.name.clone(), f.arg_types().to_vec());
    out.attrs = f.attrs.clone();
    let n = b.n;
    // Part `s`'s samples: (first, count).
    let share = |s: usize| dojo_compiler::layout::chunk(n, parts, s);
    // A batched type for part `s`: the batch dim's `N * q` elements become `count * q`.
    let part_type = |t: &Type, d: B, s: usize| -> Type {
        match (t, d) {
            (Type::Tensor(t), B::At(d)) => {
                let mut shape = t.shape.clone();
                shape[d] = shape[d] / n * share(s).1;
                Type::Tensor(TensorType::new(shape, t.elem))
            }
            (t, _) => t.clone(),
        }
    };
    let tensor = |v: Value| f.tensor(v).cloned().unwrap_or_else(|| TensorType::new(vec![], ElemType::F32));
    // Whole values (and the sums of partial ones), then each part's values: its slices of the
    // batched ones, its shares of the partial ones and its own copies of the whole ones.
    let mut shared: Vec<Option<Value>> = vec![None; f.value_types.len()];
    for a in f.args() {
        shared[a.index()] = Some(a);
    }
    let mut part: Vec<Vec<Option<Value>>> = vec![shared.clone(); parts];
    let mut sliced: std::collections::HashMap<(Value, usize, usize), Value> = Default::default();
    // The parts' values of a batched value joined for once ops (made once, shared by them).
    let mut joined: std::collections::HashMap<Value, Value> = Default::default();
    // The permutes of whole values copied for the parts: result -> (operand, dims, attrs).
    type Permutes = std::collections::HashMap<Value, (Value, Vec<usize>, Vec<(String, Attr)>)>;
    let mut permutes: Permutes = Default::default();
    // Part `s`'s samples of `v` (whole) along `d`, on its chip. A permute's slice is the
    // permute of its operand's slice, down to where the chain starts (an argument: then only
    // the part's box is loaded, not the whole saved activation on every chip).
    let mut slice_of = |out: &mut Func, permutes: &Permutes, v: Value, t: &TensorType, d: usize, s: usize| -> Value {
        let (mut base, mut bd, mut bt) = (v, d, t.clone());
        let mut chain = Vec::new();
        while let Some((x, dims, attrs)) = permutes.get(&base) {
            chain.push((dims, attrs));
            (base, bd) = (*x, dims[bd]);
            bt = out.tensor(base).cloned().unwrap_or_else(|| bt.clone());
        }
        let mut cut = *sliced.entry((base, bd, s)).or_insert_with(|| {
            let q = bt.shape[bd] / n;
            let mut offsets = vec![0i64; bt.rank()];
            offsets[bd] = (share(s).0 * q) as i64;
            let mut shape = bt.shape.clone();
            shape[bd] = share(s).1 * q;
            let ty = Type::Tensor(TensorType::new(shape, bt.elem));
            let attrs = vec![attr("offsets", Attr::Ints(offsets)), attr("strides", Attr::Ints(vec![1; bt.rank()]))];
            let cut = out.push("dojo.slice", vec![base], attrs, vec![ty.clone()]);
            out.push("dojo.on_chip", vec![cut], vec![attr("chip", Attr::Int(s as i64))], vec![ty])
        });
        for (dims, attrs) in chain.into_iter().rev() {
            let ct = out.tensor(cut).cloned().expect("slice is a tensor");
            let ty = TensorType::new(dims.iter().map(|&k| ct.shape[k]).collect::<Vec<_>>(), ct.elem);
            cut = out.push("aten.permute.default", vec![cut], attrs.clone(), vec![Type::Tensor(ty)]);
        }
        cut
    };
    // The sum over the parts of a partial value: small shares (at most `GATHER_MAX_BYTES`)
    // joined on a new outer dim and reduced, in one step; larger ones added in pairs
    // (`add_pairs`, `log2(parts)` steps, two shares on a chip at a time). The root (first)
    // part rotates from one sum to the next (`rooted`).
    let reductions = std::cell::Cell::new(0usize);
    let rooted = |shares: Vec<Value>| -> Vec<(usize, Value)> {
        let root = reductions.get() % shares.len();
        reductions.set(reductions.get() + 1);
        (0..shares.len()).map(|k| (root + k) % shares.len()).map(|k| (k, shares[k])).collect()
    };
    let paired = |t: &TensorType| (t.numel() * t.elem.bytes()) as u64 > GATHER_MAX_BYTES;
    let mut all_reduce = |out: &mut Func, shares: Vec<Value>, t: &TensorType| -> Value {
        let mut level = rooted(shares);
        if paired(t) {
            while level.len() > 1 {
                level = add_pairs(out, &level, t);
            }
            return level[0].1;
        }
        let rows = level.iter().map(|&(_, v)| row(out, v, t)).collect();
        let joined = stack(out, rows, t);
        let dims = vec![attr("dims", Attr::Ints(vec![0])), attr("keepdim", Attr::Bool(false))];
        out.push("dojo.reduce_sum", vec![joined], dims, vec![Type::Tensor(t.clone())])
    };
    // Paired sums of partial values that are only returned (weights' gradients) go a step
    // at a time: every pending sum takes one step each time an op makes new partial values,
    // the rest at the end. A step's transfer then crosses the chip edge while the parts
    // compute the next layers, instead of the receiving chip's in-order cores waiting for it
    // (resnet50 b32 training backward on a tile: 3.381 -> 3.298 ms).
    let used: Vec<bool> = {
        let mut u = vec![false; f.value_types.len()];
        f.ops.iter().flat_map(|o| &o.operands).for_each(|v| u[v.index()] = true);
        u
    };
    let mut pending: Vec<Pending> = Vec::new();
    for (i, op) in f.ops.iter().enumerate() {
        // A part's (or the shared) value of an operand; the sum of a partial one.
        let operand = |shared: &[Option<Value>], values: &[Option<Value>], v: Value| {
            if b.kinds[v.index()] == B::Partial { shared[v.index()] } else { values[v.index()] }.expect("operand before use")
        };
        let Some(plan) = &b.plans[i] else {
            // Whole: once, and once per part (each chip its own copy); a random op only once,
            // so every part sees the same values.
            let random = ["rand", "bernoulli", "dropout", "normal", "uniform", "exponential"].iter().any(|r| op.name.contains(r));
            for k in 0..=if random { 0 } else { parts } {
                let values = if k == 0 { &shared } else { &part[k - 1] };
                let operands = op.operands.iter().map(|&v| operand(&shared, values, v)).collect();
                let types = op.results().map(|r| f.ty(r).clone()).collect();
                let first = out.push(op.name.clone(), operands, op.attrs.clone(), types);
                if op.name == "aten.permute.default" {
                    let dims = op.attr("dims").and_then(Attr::as_ints).unwrap_or(&[]);
                    let x = out.ops.last().expect("pushed").operands[0];
                    // Only a true permutation of the operand's dims (malformed ones are left to
                    // the checks downstream).
                    if let Some(dims) = out.tensor(x).and_then(|t| check_perm(dims, t.rank()).ok()) {
                        permutes.insert(first, (x, dims, op.attrs.clone()));
                    }
                }
                let values = if k == 0 { &mut shared } else { &mut part[k - 1] };
                for r in 0..op.num_results {
                    values[op.result(r).index()] = Some(Value(first.0 + r as u32));
                }
            }
            if random {
                for r in op.results() {
                    part.iter_mut().for_each(|p| p[r.index()] = shared[r.index()]);
                }
            }
            continue;
        };
        if plan.once {
            // Once, from whole values: a batched argument or once value as it is, the parts'
            // values joined.
            let operands = op
                .operands
                .iter()
                .map(|&v| match (b.kinds[v.index()], shared[v.index()]) {
                    (B::At(d), None) => *joined.entry(v).or_insert_with(|| {
                        let vs = part.iter().map(|p| p[v.index()].expect("operand before use")).collect();
                        out.push("dojo.concat", vs, vec![attr("dim", Attr::Int(d as i64))], vec![f.ty(v).clone()])
                    }),
                    (_, v) => v.expect("operand before use"),
                })
                .collect();
            let first = out.push(op.name.clone(), operands, op.attrs.clone(), op.results().map(|r| f.ty(r).clone()).collect());
            for (k, r) in op.results().enumerate() {
                let v = Value(first.0 + k as u32);
                shared[r.index()] = Some(v);
                for (s, p) in part.iter_mut().enumerate() {
                    p[r.index()] = Some(match b.kinds[r.index()] {
                        B::At(d) => slice_of(&mut out, &permutes, v, &tensor(r), d, s),
                        _ => v,
                    });
                }
            }
            continue;
        }
        // A batched argument is sliced where it is first used (loaded then, not up front).
        for &x in op.operands.iter().filter(|x| b.seeds.binary_search(x).is_ok()) {
            for (s, p) in part.iter_mut().enumerate() {
                if p[x.index()] == Some(x) {
                    p[x.index()] = Some(slice_of(&mut out, &permutes, x, &tensor(x), 0, s));
                }
            }
        }
        // Each part's operands: batched ones its own, whole ones sliced where the plan says.
        let mut ins: Vec<Vec<Value>> = Vec::new();
        for s in 0..parts {
            let mut vs = Vec::new();
            for (k, &v) in op.operands.iter().enumerate() {
                let x = operand(&shared, &part[s], v);
                vs.push(match plan.slice[k] {
                    Some(d) => slice_of(&mut out, &permutes, x, &tensor(v), d, s),
                    None => x,
                });
            }
            ins.push(vs);
        }
        if plan.var_mean {
            let (var, mean) = var_mean(&mut out, f, op, &ins, &mut all_reduce);
            for (r, v) in [(op.result(0), var), (op.result(1), mean)] {
                shared[r.index()] = Some(v);
                part.iter_mut().for_each(|p| p[r.index()] = Some(v));
            }
            continue;
        }
        // One copy per part, next to each other: the chips then start each layer together.
        for (s, operands) in ins.into_iter().enumerate() {
            let types = op.results().map(|r| part_type(f.ty(r), b.kinds[r.index()], s)).collect();
            let mut attrs = op.attrs.clone();
            if let (B::At(d), Some(pos)) = (b.kinds[op.result(0).index()], attrs.iter().position(|(k, _)| k == "size")) {
                if let Attr::Ints(size) = &mut attrs[pos].1 {
                    if let Some(x) = size.get_mut(d).filter(|x| **x > 0) {
                        *x = *x / n as i64 * share(s).1 as i64;
                    }
                }
            }
            let first = out.push(op.name.clone(), operands, attrs, types);
            for k in 0..op.num_results {
                let (r, v) = (op.result(k), Value(first.0 + k as u32));
                part[s][r.index()] = Some(v);
                if b.kinds[r.index()] == B::Whole && s == 0 {
                    shared[r.index()] = Some(v);
                }
            }
        }
        // Partial results are summed right away (a returned one's pairs a step at a time,
        // above), so the parts' shares (a weight's gradient on every chip) do not wait in SRAM
        // for their use or the end.
        let partial: Vec<Value> = op.results().filter(|r| b.kinds[r.index()] == B::Partial).collect();
        if !partial.is_empty() {
            step_pairs(&mut out, &mut shared, &mut pending);
        }
        for r in partial {
            let shares = part.iter().map(|p| p[r.index()].expect("share computed")).collect();
            let t = tensor(r);
            if !used[r.index()] && paired(&t) {
                pending.push((r, rooted(shares), t));
            } else {
                shared[r.index()] = Some(all_reduce(&mut out, shares, &t));
            }
        }
    }
    while !pending.is_empty() {
        step_pairs(&mut out, &mut shared, &mut pending);
    }
    let mut rets = Vec::new();
    for &r in &f.returns {
        rets.push(match b.kinds[r.index()] {
            // An argument returned as it is.
            _ if r.index() < f.num_args => r,
            // Computed once (`OpPlan::once`): as it is.
            B::At(_) if shared[r.index()].is_some() => shared[r.index()].expect("checked"),
            B::At(d) => {
                let vs: Vec<Value> = part.iter().map(|p| p[r.index()].expect("result computed")).collect();
                out.push("dojo.concat", vs, vec![attr("dim", Attr::Int(d as i64))], vec![f.ty(r).clone()])
            }
            B::Partial => shared[r.index()].expect("partial result summed"),
            B::Whole => shared[r.index()].expect("result computed"),
        });
    }
    out.set_returns(rets);
    out
}

/// A sum in pairs under way: the partial value, its remaining (chip, value) shares, its type.
type Pending = (Value, Vec<(usize, Value)>, TensorType);

/// One step (`add_pairs`) of each pending sum; a finished one becomes its value's whole value
/// in `shared`.
fn step_pairs(out: &mut Func, shared: &mut [Option<Value>], pending: &mut Vec<Pending>) {
    for (_, level, t) in pending.iter_mut() {
        *level = add_pairs(out, level, t);
    }
    pending.retain(|(r, level, _)| match level[..] {
        [(_, v)] => {
            shared[r.index()] = Some(v);
            false
        }
        _ => true,
    });
}

/// One step of a sum in pairs over chips (`(chip, value)` in order): the second value of
/// each pair moves to the first's chip and is added there; an odd last one waits.
fn add_pairs(out: &mut Func, level: &[(usize, Value)], t: &TensorType) -> Vec<(usize, Value)> {
    level
        .chunks(2)
        .map(|pair| match *pair {
            [(ka, a), (_, b)] => {
                let chip = vec![attr("chip", Attr::Int(ka as i64))];
                let moved = out.push("dojo.on_chip", vec![b], chip, vec![Type::Tensor(t.clone())]);
                (ka, out.push("dojo.add", vec![a, moved], vec![], vec![Type::Tensor(t.clone())]))
            }
            [a] => a,
            _ => unreachable!("chunks of two"),
        })
        .collect()
}

/// A part's value `v` of type `t` as a row of a stack (`[1, t...]`, see `stack`).
fn row(out: &mut Func, v: Value, t: &TensorType) -> Value {
    out.push("dojo.reshape", vec![v], vec![], vec![Type::Tensor(TensorType::new([vec![1], t.shape.clone()].concat(), t.elem))])
}

/// The parts' rows (`row`) of values of type `t` joined on the new outer dim: `[parts, t...]`.
fn stack(out: &mut Func, rows: Vec<Value>, t: &TensorType) -> Value {
    let all = TensorType::new([vec![rows.len()], t.shape.clone()].concat(), t.elem);
    out.push("dojo.concat", rows, vec![attr("dim", Attr::Int(0))], vec![Type::Tensor(all)])
}

/// `var_mean(x)` over dims including the batch, from the parts' slices `ins[s][0]`: with
/// equal shares and small statistics, each part's sum and squared deviations from its own
/// mean gathered in one exchange, the variance adding the spread of the parts' means (Chan et
/// al.); else the mean from the all-reduced sums, then the variance from the all-reduced
/// squared deviations from it (two passes, as in one piece). Returns (variance, mean), whole.
fn var_mean(out: &mut Func, f: &Func, op: &Op, ins: &[Vec<Value>], all_reduce: &mut impl FnMut(&mut Func, Vec<Value>, &TensorType) -> Value) -> (Value, Value) {
    let x = f.tensor(op.operands[0]).cloned().unwrap_or_else(|| TensorType::new(vec![], ElemType::F32));
    // The rule checked the dims.
    let dims: Vec<i64> = reduced_dims(op, x.rank()).unwrap_or_default().iter().map(|&d| d as i64).collect();
    let count: usize = dims.iter().map(|&d| x.shape[d as usize]).product();
    let correction = op.attr("correction").and_then(Attr::as_float).unwrap_or(1.0);
    let kept = TensorType::new(x.shape.iter().enumerate().map(|(d, &s)| if dims.contains(&(d as i64)) { 1 } else { s }).collect::<Vec<_>>(), x.elem);
    let sum_attrs = vec![attr("dim", Attr::Ints(dims.clone())), attr("keepdim", Attr::Bool(true))];
    let sum = |out: &mut Func, v: Value| out.push("aten.sum.dim_IntList", vec![v], sum_attrs.clone(), vec![Type::Tensor(kept.clone())]);
    let div = |out: &mut Func, v: Value, by: f64| out.push("aten.div.Scalar", vec![v], vec![attr("other", Attr::Float(by))], vec![Type::Tensor(kept.clone())]);
    let sub = |out: &mut Func, a: Value, b: Value, ty: Type| out.push("aten.sub.Tensor", vec![a, b], vec![attr("alpha", Attr::Int(1))], vec![ty]);
    let square_sum = |out: &mut Func, x: Value, m: Value| {
        let ty = out.ty(x).clone();
        let dev = sub(out, x, m, ty.clone());
        let sq = out.push("aten.mul.Tensor", vec![dev, dev], vec![], vec![ty]);
        sum(out, sq)
    };
    let same_shares = ins.windows(2).all(|w| out.ty(w[0][0]) == out.ty(w[1][0]));
    let (mean, m2) = if same_shares && 2 * (kept.numel() * kept.elem.bytes()) as u64 <= GATHER_MAX_BYTES {
        // Equal shares of `c` elements each: each part's sum and squared deviations from its
        // own mean, gathered once (one exchange, not two); the variance adds the parts' means'
        // spread (`c * sum_k (m_k - mean)^2`, Chan et al.), as stable as two passes.
        let c = count as f64 / ins.len() as f64;
        let stacked = TensorType::new([vec![ins.len()], kept.shape.clone()].concat(), kept.elem);
        let (mut sums, mut squares) = (Vec::new(), Vec::new());
        for i in ins {
            let s = sum(out, i[0]);
            let m = div(out, s, c);
            let q = square_sum(out, i[0], m);
            sums.push(row(out, s, &kept));
            squares.push(row(out, q, &kept));
        }
        let (s, q) = (stack(out, sums, &kept), stack(out, squares, &kept));
        let over_parts = vec![attr("dim", Attr::Ints(vec![0])), attr("keepdim", Attr::Bool(false))];
        let total = |out: &mut Func, v: Value| out.push("aten.sum.dim_IntList", vec![v], over_parts.clone(), vec![Type::Tensor(kept.clone())]);
        let s_all = total(out, s);
        let mean = div(out, s_all, count as f64);
        let means = out.push("aten.div.Scalar", vec![s], vec![attr("other", Attr::Float(c))], vec![Type::Tensor(stacked.clone())]);
        let dev = sub(out, means, mean, Type::Tensor(stacked.clone()));
        let sq = out.push("aten.mul.Tensor", vec![dev, dev], vec![], vec![Type::Tensor(stacked.clone())]);
        let spread = total(out, sq);
        let spread = div(out, spread, 1.0 / c);
        let within = total(out, q);
        let m2 = out.push("aten.add.Tensor", vec![within, spread], vec![attr("alpha", Attr::Int(1))], vec![Type::Tensor(kept.clone())]);
        (mean, m2)
    } else {
        let shares = ins.iter().map(|i| sum(out, i[0])).collect();
        let total = all_reduce(out, shares, &kept);
        let mean = div(out, total, count as f64);
        let squares = ins.iter().map(|i| square_sum(out, i[0], mean)).collect();
        (mean, all_reduce(out, squares, &kept))
    };
    let var = div(out, m2, (count as f64 - correction).max(0.0));
    let keepdim = op.attr("keepdim").and_then(Attr::as_bool).unwrap_or(false);
    let shaped = |out: &mut Func, v: Value, k: usize| {
        let t = f.ty(op.result(k)).clone();
        if keepdim {
            return v;
        }
        let size = match &t {
            Type::Tensor(t) => t.shape.iter().map(|&s| s as i64).collect(),
            _ => vec![],
        };
        out.push("aten.view.default", vec![v], vec![attr("size", Attr::Ints(size))], vec![t])
    };
    (shaped(out, var, 0), shaped(out, mean, 1))
}
