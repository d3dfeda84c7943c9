//! Functional semantics of the compute kernels, in `f32`.
//!
//! Pure functions from input arrays (shape + row-major data) to the output array. They
//! assume shapes that passed [`crate::program::check_kernel`]; the simulator validates
//! before it calls them. NaN and infinities propagate as in eager PyTorch; nothing here
//! rejects a value.

use crate::program::{BinaryOp, FusedArg, FusedFn, FusedStep, KernelOp, UnaryOp};
use crate::shape::{broadcast_strides, copy_row, for_each_row, merge_dims, numel, strides, Dims};

/// Evaluates `$body` with `$f` bound to the function of the [`UnaryOp`] `$op`: one closure
/// per function, so a loop in `$body` is compiled once per function with no match per element.
macro_rules! with_unary {
    ($op:expr, $f:ident => $body:expr) => {{
        match $op {
            UnaryOp::Relu => {
                let $f = |x: f32| if x.is_nan() || x > 0.0 { x } else { 0.0 };
                $body
            }
            UnaryOp::Neg => {
                let $f = |x: f32| -x;
                $body
            }
            UnaryOp::Exp => {
                let $f = f32::exp;
                $body
            }
            UnaryOp::Log => {
                let $f = f32::ln;
                $body
            }
            UnaryOp::Sqrt => {
                let $f = f32::sqrt;
                $body
            }
            UnaryOp::Rsqrt => {
                let $f = |x: f32| 1.0 / x.sqrt();
                $body
            }
            UnaryOp::Abs => {
                let $f = f32::abs;
                $body
            }
            UnaryOp::Tanh => {
                let $f = tanh;
                $body
            }
            UnaryOp::Sigmoid => {
                let $f = |x: f32| 1.0 / (1.0 + (-x).exp());
                $body
            }
            UnaryOp::Reciprocal => {
                let $f = |x: f32| 1.0 / x;
                $body
            }
            UnaryOp::Erf => {
                let $f = libm::erff;
                $body
            }
            UnaryOp::Copy => {
                let $f = |x: f32| x;
                $body
            }
        }
    }};
}

/// [`with_unary`] for a [`BinaryOp`]: `$f` is a `Fn(f32, f32) -> f32`. Max and min give NaN
/// if either operand is NaN (as torch does); comparisons give 1.0 or 0.0.
macro_rules! with_binary {
    ($op:expr, $f:ident => $body:expr) => {{
        let truth = |t: bool| if t { 1.0f32 } else { 0.0 };
        match $op {
            BinaryOp::Add => {
                let $f = |a: f32, b: f32| a + b;
                $body
            }
            BinaryOp::Sub => {
                let $f = |a: f32, b: f32| a - b;
                $body
            }
            BinaryOp::Mul => {
                let $f = |a: f32, b: f32| a * b;
                $body
            }
            BinaryOp::Div => {
                let $f = |a: f32, b: f32| a / b;
                $body
            }
            BinaryOp::Max => {
                let $f = |a: f32, b: f32| if a.is_nan() || b.is_nan() { f32::NAN } else { a.max(b) };
                $body
            }
            BinaryOp::Min => {
                let $f = |a: f32, b: f32| if a.is_nan() || b.is_nan() { f32::NAN } else { a.min(b) };
                $body
            }
            BinaryOp::Pow => {
                // A square or a cube multiplied out, as torch's CPU kernel does for a scalar
                // exponent of 2 or 3 (the same bits as eager, and no powf call); else powf.
                // (For a tensor exponent torch calls pow elementwise, within an ulp of this.)
                let $f = |a: f32, b: f32| {
                    if b == 2.0 {
                        a * a
                    } else if b == 3.0 {
                        a * a * a
                    } else {
                        a.powf(b)
                    }
                };
                $body
            }
            BinaryOp::Eq => {
                let $f = |a: f32, b: f32| truth(a == b);
                $body
            }
            BinaryOp::Ne => {
                let $f = |a: f32, b: f32| truth(a != b);
                $body
            }
            BinaryOp::Lt => {
                let $f = |a: f32, b: f32| truth(a < b);
                $body
            }
            BinaryOp::Le => {
                let $f = |a: f32, b: f32| truth(a <= b);
                $body
            }
            BinaryOp::Gt => {
                let $f = |a: f32, b: f32| truth(a > b);
                $body
            }
            BinaryOp::Ge => {
                let $f = |a: f32, b: f32| truth(a >= b);
                $body
            }
        }
    }};
}

/// `tanh(x)` within 2 ulp (1 over the tests' sweep of [-12, 12]; libm's `tanhf` is as
/// close but is a call costing ~14 ns, this is plain arithmetic, so a loop of it vectorises).
/// Cephes' tanhf: an odd polynomial below |x| = 0.625, else `1 - 2 / (e^2|x| + 1)` with |x|
/// capped at 10 (in f32, tanh is 1 from 9.02 on; at the cap this form rounds to 1 too) and
/// [`exp_small`]. No fused multiply-adds: the same bits on every x86-64, vectorised or not.
#[inline(always)]
pub(crate) fn tanh(x: f32) -> f32 {
    // tanh(|x|), with the sign of x (tanh(-0) is -0).
    let a = x.abs();
    let z = a * a;
    let small = ((((-5.704_988_7e-3 * z + 2.063_909e-2) * z - 5.373_971_6e-2) * z + 1.333_144_2e-1) * z - 3.333_328e-1) * z * a + a;
    let large = 1.0 - 2.0 / (exp_small(2.0 * a.min(10.0)) + 1.0);
    let r = if a < 0.625 { small } else { large }.copysign(x);
    if x.is_nan() {
        x
    } else {
        r
    }
}

/// `e^y` for `y` in [0, 20] (Cephes' expf: `y = n ln 2 + r`, a degree-7 polynomial in `r`,
/// times `2^n` built from its bits), within 1 ulp.
#[inline(always)]
fn exp_small(y: f32) -> f32 {
    // (n = round(y / ln 2): y >= 0, so truncating y / ln 2 + 0.5 rounds it.)
    let n = (y * std::f32::consts::LOG2_E + 0.5) as i32;
    let nf = n as f32;
    let r = y - nf * 0.693_359_4 + nf * 2.121_944_4e-4;
    let p = (((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r + 1.666_666_5e-1) * r + 0.5) * r * r + r + 1.0;
    p * f32::from_bits(((n + 127) as u32) << 23)
}

/// [`tanh`] of every value of `x` into `out`: with AVX2 where the CPU has it (8 lanes).
fn tanh_slice(x: &[f32], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2.
        return unsafe { tanh_slice_avx2(x, out) };
    }
    for (o, &v) in out.iter_mut().zip(x) {
        *o = tanh(v);
    }
}

/// # Safety
/// The CPU must support AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn tanh_slice_avx2(x: &[f32], out: &mut [f32]) {
    for (o, &v) in out.iter_mut().zip(x) {
        *o = tanh(v);
    }
}

/// How a binary operand of `shape` covers an output of `out` row by row (rows along the
/// last dim), for the common broadcasts that need no stride walk.
#[derive(Clone, Copy)]
enum Spread {
    /// The whole output's shape.
    Whole,
    /// One value per row (the output's shape with its last dim 1).
    PerRow,
    /// One row for every row (ones, then the last dim; or a single value).
    Row,
}

impl Spread {
    fn of(shape: &[usize], out: &[usize]) -> Option<Spread> {
        let lead = out.len().checked_sub(shape.len())?;
        let (last, body) = out.split_last()?;
        let aligned = |d: usize| if d < lead { 1 } else { shape[d - lead] };
        let row = aligned(body.len());
        if shape == out {
            Some(Spread::Whole)
        } else if row == 1 && (0..body.len()).all(|d| aligned(d) == body[d]) {
            Some(Spread::PerRow)
        } else if (0..body.len()).all(|d| aligned(d) == 1) && (row == *last || row == 1) {
            Some(Spread::Row)
        } else {
            None
        }
    }

    /// Row `r` of the operand (rows of `n` values) as the run [`row2`] takes and its step.
    fn row(self, data: &[f32], r: usize, n: usize) -> (&[f32], usize) {
        match self {
            Spread::Whole => (&data[r * n..(r + 1) * n], 1),
            Spread::PerRow => (&data[r..r + 1], 0),
            Spread::Row if data.len() == 1 => (data, 0),
            Spread::Row => (data, 1),
        }
    }
}

/// One input array: its shape and row-major data.
pub(crate) type Array<'a> = (&'a [usize], &'a [f32]);

/// Runs `op` on `ins` writing the `out_shape` result into `out` (`numel(out_shape)` values).
/// `out` holds the output buffer's current contents: an accumulating matmul adds to them,
/// every other kernel overwrites every element.
pub(crate) fn run_into(op: &KernelOp, ins: &[Array<'_>], out_shape: &[usize], out: &mut [f32]) {
    match op {
        KernelOp::MatMul { accumulate, epilogue } => {
            matmul(ins[0], ins[1], out, *accumulate);
            if !epilogue.is_empty() {
                fused(epilogue, &ins[2..], true, out_shape, out);
            }
        }
        KernelOp::Unary { op: UnaryOp::Tanh } => tanh_slice(ins[0].1, out),
        KernelOp::Unary { op } => with_unary!(*op, f => {
            for (o, &x) in out.iter_mut().zip(ins[0].1) {
                *o = f(x);
            }
        }),
        KernelOp::Scale { factor } => {
            for (o, &x) in out.iter_mut().zip(ins[0].1) {
                *o = x * factor;
            }
        }
        // The rounding needs the scale's bias and counts flags: the simulator applies it.
        KernelOp::Convert { .. } => out.copy_from_slice(ins[0].1),
        // The values need the run's seed: the simulator draws them (`random`).
        KernelOp::Random { .. } => {}
        KernelOp::Binary { op } => {
            let (a, b) = (ins[0], ins[1]);
            let n = out_shape.last().copied().unwrap_or(1).max(1);
            if a.0 == out_shape && b.0 == out_shape {
                with_binary!(*op, f => row2(out, a.1, 1, b.1, 1, f));
            } else if let (Some(pa), Some(pb)) = (Spread::of(a.0, out_shape), Spread::of(b.0, out_shape)) {
                // One operand whole, the other one value per row or one row for all (a layer
                // norm's or a softmax's statistics, a bias): row by row, no stride walk.
                let rows = out.chunks_exact_mut(n).enumerate();
                with_binary!(*op, f => for (r, o) in rows {
                    let (x, kx) = pa.row(a.1, r, n);
                    let (y, ky) = pb.row(b.1, r, n);
                    row2(o, x, kx, y, ky, f);
                });
            } else {
                let (sa, sb) = (broadcast_strides(a.0, out_shape), broadcast_strides(b.0, out_shape));
                let (dims, [so, sa, sb]) = merge_dims(out_shape, [&strides(out_shape), &sa, &sb]);
                with_binary!(*op, f => for_each_row(&dims, [&so, &sa, &sb], |[o, ia, ib], len, [_, ka, kb]| {
                    row2(&mut out[o..o + len], &a.1[ia..], ka, &b.1[ib..], kb, f);
                }));
            }
        }
        KernelOp::Select => {
            let (c, a, b) = (ins[0], ins[1], ins[2]);
            let (sc, sa, sb) =
                (broadcast_strides(c.0, out_shape), broadcast_strides(a.0, out_shape), broadcast_strides(b.0, out_shape));
            let so = strides(out_shape);
            for_each_row(out_shape, [&so, &sc, &sa, &sb], |[o, ic, ia, ib], len, [_, kc, ka, kb]| {
                for (j, slot) in out[o..o + len].iter_mut().enumerate() {
                    *slot = if c.1[ic + j * kc] != 0.0 { a.1[ia + j * ka] } else { b.1[ib + j * kb] };
                }
            });
        }
        KernelOp::Fused { steps } => fused(steps, ins, false, out_shape, out),
        KernelOp::ReduceSum { dims } | KernelOp::ReduceMax { dims } => {
            let (shape, data) = ins[0];
            let is_max = matches!(op, KernelOp::ReduceMax { .. });
            // Walk the input in row-major order; each element lands on its keepdim slot.
            let out_strides = strides(out_shape);
            let to_out: Dims = (0..shape.len())
                .map(|d| if dims.contains(&d) { 0 } else { out_strides[d] })
                .collect();
            out.fill(if is_max { f32::NEG_INFINITY } else { 0.0f32 });
            // NaN wins and stays (a NaN slot is never replaced: NaN > x is false).
            let max = |slot: f32, x: f32| if (x.is_nan() || x > slot) && !slot.is_nan() { x } else { slot };
            let (dims, [si, to_out]) = merge_dims(shape, [&strides(shape), &to_out]);
            // Each input element is combined into its slot in row-major order (the sums'
            // order, so their rounding, does not depend on the shape of the walk).
            for_each_row(&dims, [&si, &to_out], |[i, o], len, [_, ko]| {
                let row = &data[i..i + len];
                match (ko, is_max) {
                    (0, false) => out[o] = row.iter().fold(out[o], |acc, &x| acc + x),
                    (0, true) => out[o] = row.iter().fold(out[o], |acc, &x| max(acc, x)),
                    (1, false) => out[o..o + len].iter_mut().zip(row).for_each(|(s, &x)| *s += x),
                    (1, true) => out[o..o + len].iter_mut().zip(row).for_each(|(s, &x)| *s = max(*s, x)),
                    (_, false) => row.iter().enumerate().for_each(|(j, &x)| out[o + j * ko] += x),
                    (_, true) => row.iter().enumerate().for_each(|(j, &x)| out[o + j * ko] = max(out[o + j * ko], x)),
                }
            });
        }
        // Swapping the last two dims (a matrix, or a batch of them): by rows of the output,
        // each gathering one column of the input, without the stride walk.
        KernelOp::Transpose { perm }
            if perm.len() >= 2
                && perm[..perm.len() - 2].iter().enumerate().all(|(d, &p)| p == d)
                && perm[perm.len() - 2..] == [perm.len() - 1, perm.len() - 2] =>
        {
            let (shape, data) = ins[0];
            let (r, c) = (shape[shape.len() - 2], shape[shape.len() - 1]);
            if r * c > 0 {
                for (matrix, t) in data.chunks_exact(r * c).zip(out.chunks_exact_mut(r * c)) {
                    for (j, t_row) in t.chunks_exact_mut(r).enumerate() {
                        for (o, row) in t_row.iter_mut().zip(matrix.chunks_exact(c)) {
                            *o = row[j];
                        }
                    }
                }
            }
        }
        KernelOp::Transpose { perm } => {
            let (shape, data) = ins[0];
            let st = strides(shape);
            let walk: Dims = perm.iter().map(|&p| st[p]).collect();
            gather_strided(data, 0, out_shape, &walk, out);
        }
        KernelOp::Reshape => out.copy_from_slice(ins[0].1),
        KernelOp::Slice { offsets, strides: steps } => {
            let (shape, data) = ins[0];
            let st = strides(shape);
            let base: usize = offsets.iter().zip(&st).map(|(o, s)| o * s).sum();
            let walk: Dims = steps.iter().zip(&st).map(|(k, s)| k * s).collect();
            gather_strided(data, base, out_shape, &walk, out);
        }
        KernelOp::Embedding => {
            let ((ts, table), (_, ids)) = (ins[0], ins[1]);
            let d = ts[1];
            for (row_out, &id) in out.chunks_exact_mut(d.max(1)).zip(ids) {
                let row = id as usize * d;
                row_out.copy_from_slice(&table[row..row + d]);
            }
        }
        KernelOp::EmbeddingPart { offset, .. } => {
            let ((ts, table), (_, ids)) = (ins[0], ins[1]);
            let (rows, d) = (ts[0], ts[1]);
            for (row_out, &id) in out.chunks_exact_mut(d.max(1)).zip(ids) {
                match (id as usize).checked_sub(*offset).filter(|&r| r < rows) {
                    Some(r) => row_out.copy_from_slice(&table[r * d..(r + 1) * d]),
                    None => row_out.fill(0.0),
                }
            }
        }
        KernelOp::EmbeddingGrad { offset, skip } => {
            let ((gs, grad), (_, ids)) = (ins[0], ins[1]);
            let d = gs[gs.len() - 1];
            let rows = out_shape[0];
            out.fill(0.0);
            for (i, &id) in ids.iter().enumerate() {
                let id = id as usize;
                if id < *offset || id >= offset + rows || Some(id) == *skip {
                    continue;
                }
                let dst = &mut out[(id - offset) * d..(id - offset + 1) * d];
                for (o, &g) in dst.iter_mut().zip(&grad[i * d..(i + 1) * d]) {
                    *o += g;
                }
            }
        }
        KernelOp::Iota { dim, start } => {
            let st = strides(out_shape);
            for (i, o) in out.iter_mut().enumerate() {
                *o = (start + (i / st[*dim]) % out_shape[*dim]) as f32;
            }
        }
        KernelOp::Pad { low, interior, value } => {
            let (shape, data) = ins[0];
            let st = strides(out_shape);
            let base: usize = low.iter().zip(&st).map(|(o, s)| o * s).sum();
            let walk: Dims = interior.iter().zip(&st).map(|(k, s)| (k + 1) * s).collect();
            out.fill(*value);
            let si = strides(shape);
            for_each_row(shape, [&si, &walk], |[i, o], len, [_, ko]| {
                if ko == 1 {
                    copy_row(&mut out[base + o..base + o + len], &data[i..i + len]);
                } else {
                    for (j, &x) in data[i..i + len].iter().enumerate() {
                        out[base + o + j * ko] = x;
                    }
                }
            });
        }
    }
}

/// Whether `op` writes every element of its output without reading it (all kernels but an
/// accumulating matmul), so the output's earlier contents cannot matter.
pub(crate) fn overwrites_output(op: &KernelOp) -> bool {
    match op {
        KernelOp::MatMul { accumulate, .. } => !accumulate,
        KernelOp::Unary { .. }
        | KernelOp::Scale { .. }
        | KernelOp::Binary { .. }
        | KernelOp::Select
        | KernelOp::Fused { .. }
        | KernelOp::ReduceSum { .. }
        | KernelOp::ReduceMax { .. }
        | KernelOp::Transpose { .. }
        | KernelOp::Reshape
        | KernelOp::Slice { .. }
        | KernelOp::Embedding
        | KernelOp::EmbeddingPart { .. }
        | KernelOp::EmbeddingGrad { .. }
        | KernelOp::Iota { .. }
        | KernelOp::Pad { .. }
        | KernelOp::Convert { .. }
        | KernelOp::Random { .. } => true,
    }
}

/// Output elements a fused kernel evaluates at a time: every step runs over one chunk (the
/// functions of the `Unary`/`Binary`/`Select` kernels on the same values, so the bits equal
/// those of the unfused chain).
const FUSED_CHUNK: usize = 256;

/// With `in_place` (a matmul's epilogue), input 0 is `out`'s current value and `ins[i]` is
/// input `i + 1`: each chunk of `out` is read before it is overwritten.
fn fused(steps: &[FusedStep], ins: &[Array<'_>], in_place: bool, out_shape: &[usize], out: &mut [f32]) {
    // Inputs of another shape are broadcast to the output's once (shards are small).
    let wide: Vec<Option<Vec<f32>>> = ins
        .iter()
        .map(|&(shape, data)| {
            (shape != out_shape).then(|| {
                let mut full = vec![0.0f32; out.len()];
                gather_strided(data, 0, out_shape, &broadcast_strides(shape, out_shape), &mut full);
                full
            })
        })
        .collect();
    let inputs: Vec<&[f32]> = wide.iter().zip(ins).map(|(w, &(_, data))| w.as_deref().unwrap_or(data)).collect();
    let mut vals = vec![[0.0f32; FUSED_CHUNK]; steps.len()];
    let mut current = [0.0f32; FUSED_CHUNK];
    let mut start = 0;
    while start < out.len() {
        let len = FUSED_CHUNK.min(out.len() - start);
        if in_place {
            current[..len].copy_from_slice(&out[start..start + len]);
        }
        let x0 = in_place.then_some(&current[..len]);
        for (i, step) in steps.iter().enumerate() {
            let (done, rest) = vals.split_at_mut(i);
            let dst = &mut rest[0][..len];
            // An argument as a run of values and its step (a constant: one value, step 0).
            let arg = |a| fused_arg(a, &inputs, x0, done, start, len);
            match (step.f, step.args.as_slice()) {
                (FusedFn::Unary(op), [x]) => {
                    let (x, kx) = arg(x);
                    with_unary!(op, f => for (j, d) in dst.iter_mut().enumerate() {
                        *d = f(x[j * kx]);
                    });
                }
                (FusedFn::Binary(op), [a, b]) => {
                    let ((a, ka), (b, kb)) = (arg(a), arg(b));
                    with_binary!(op, f => row2(dst, a, ka, b, kb, f));
                }
                (FusedFn::Select, [c, a, b]) => {
                    let ((c, kc), (a, ka), (b, kb)) = (arg(c), arg(a), arg(b));
                    for (j, d) in dst.iter_mut().enumerate() {
                        *d = if c[j * kc] != 0.0 { a[j * ka] } else { b[j * kb] };
                    }
                }
                _ => unreachable!("check_kernel checks every step's arity"),
            }
        }
        out[start..start + len].copy_from_slice(&vals[steps.len() - 1][..len]);
        start += len;
    }
}

/// A fused step's argument over the chunk `start..start + len`: its values and their step
/// (a constant is one value with step 0).
/// `x0`: the chunk of input 0 when it is the output's current value (then `inputs[k - 1]`
/// is input `k`).
fn fused_arg<'a>(
    a: &'a FusedArg,
    inputs: &[&'a [f32]],
    x0: Option<&'a [f32]>,
    done: &'a [[f32; FUSED_CHUNK]],
    start: usize,
    len: usize,
) -> (&'a [f32], usize) {
    match (a, x0) {
        (FusedArg::Input(0), Some(x0)) => (x0, 1),
        (FusedArg::Input(k), Some(_)) => (&inputs[*k - 1][start..start + len], 1),
        (FusedArg::Input(k), None) => (&inputs[*k][start..start + len], 1),
        (FusedArg::Step(s), _) => (&done[*s][..len], 1),
        (FusedArg::Const(c), _) => (std::slice::from_ref(c), 0),
    }
}

/// `out` (row-major `shape`) = `data[base + sum(index[d] * walk[d])]`.
fn gather_strided(data: &[f32], base: usize, shape: &[usize], walk: &[usize], out: &mut [f32]) {
    if shape.contains(&0) {
        return;
    }
    let (dims, [so, steps]) = merge_dims(shape, [&strides(shape), walk]);
    for_each_row(&dims, [&so, &steps], |[o, i], len, [_, k]| {
        let dst = &mut out[o..o + len];
        let src = &data[base + i..];
        // (A rank-0 walk is one element with step 0.)
        if k == 1 || len == 1 {
            copy_row(dst, &src[..len]);
        } else if k == 0 {
            // A broadcast (innermost dim of stride 0): one value along the row.
            dst.fill(src[0]);
        } else if k == 2 && src.len() >= 2 * len {
            // Every other value (a stride-2 convolution's or pooling's taps): pairs, which
            // vectorise.
            for (slot, pair) in dst.iter_mut().zip(src.chunks_exact(2)) {
                *slot = pair[0];
            }
        } else {
            for (slot, &x) in dst.iter_mut().zip(src.iter().step_by(k)) {
                *slot = x;
            }
        }
    });
}

/// `I64` values are carried as `f32`, which holds every integer of magnitude below 2^24
/// exactly; sums, differences, products, maxima and selections of such integers are then
/// exact too, as long as the result stays below the limit.
pub(crate) const EXACT_INT_LIMIT: f32 = 16_777_216.0;

/// Check that a buffer of `I64` values holds only integers below [`EXACT_INT_LIMIT`]; an
/// error names the first offending value, so an integer result can never be silently rounded.
pub(crate) fn check_exact_ints(data: &[f32], what: &str) -> Result<(), crate::error::RuntimeError> {
    check_exact_ints_in(data.iter().copied(), what)
}

/// [`check_exact_ints`] over any run of values (e.g. a strided box).
pub(crate) fn check_exact_ints_in(mut data: impl Iterator<Item = f32>, what: &str) -> Result<(), crate::error::RuntimeError> {
    match data.find(|x| !(x.abs() < EXACT_INT_LIMIT && x.fract() == 0.0)) {
        None => Ok(()),
        Some(x) => Err(crate::error::RuntimeError::new(format!(
            "{what}: the int64 value {x} is outside the range the simulator computes exactly \
             (integers below 2^24 in magnitude), so the result would not be exact; run this \
             model eagerly for such inputs or keep its integer tensors below 2^24"
        ))),
    }
}

/// Check the ids of an `Embedding` (`EmbeddingGrad`) kernel before it runs: every id an
/// integer in `0..V` (not negative). The compiler maps an out-of-range coordinate to -1.
pub(crate) fn check_kernel_data(op: &KernelOp, ins: &[Array<'_>]) -> Result<(), crate::error::RuntimeError> {
    let (ids, rows) = match (op, ins) {
        (KernelOp::Embedding, [(ts, _), (_, ids)]) => (*ids, ts[0]),
        (KernelOp::EmbeddingPart { total, .. }, [_, (_, ids)]) => (*ids, *total),
        (KernelOp::EmbeddingGrad { .. }, [_, (_, ids)]) => (*ids, usize::MAX),
        _ => return Ok(()),
    };
    match ids.iter().find(|&&x| !(x >= 0.0 && (x as usize) < rows && x.fract() == 0.0)) {
        Some(bad) => Err(crate::error::RuntimeError::new(format!(
            "index {bad} is out of range{}: an index tensor fed to the model points outside the tensor it indexes (PyTorch raises an IndexError here)",
            if rows == usize::MAX { String::new() } else { format!(" for {rows} rows") }
        ))),
        None => Ok(()),
    }
}

/// `out (+)= a @ b` for rank 2 or batched rank 3: every output element starts from 0 (or its
/// current value when `accumulate`) and adds the products `a[i][p] * b[p][j]` one at a time
/// in increasing `p`, each as one fused multiply-add (the product is not rounded, as in
/// D1's FP32 SIMD FMA; products of CFloat operands are exact in FP32 either way, so for them
/// this equals a separate multiply and add). So a matmul split along k
/// into accumulating steps gives the same bits as the unsplit one, and the result does not
/// depend on how the output is tiled or on the thread count. Output blocks of up to 4 x 16
/// (8 x 8 for an output narrower than 16 columns) stay in registers over the whole k loop.
fn matmul((a_shape, a): Array<'_>, (b_shape, b): Array<'_>, out: &mut [f32], accumulate: bool) {
    // [m, k] @ [k, n], [bt, m, k] @ [bt, k, n], or [d..., k] @ [k, n] (rows d...).
    let (bt, m, k, n) = match (a_shape.len(), b_shape.len()) {
        (3, 3) => (a_shape[0], a_shape[1], a_shape[2], b_shape[2]),
        (r, _) => (1, a_shape[..r - 1].iter().product(), a_shape[r - 1], b_shape[b_shape.len() - 1]),
    };
    if m == 0 || n == 0 {
        return;
    }
    for t in 0..bt {
        let a = &a[t * m * k..(t + 1) * m * k];
        let b = &b[t * k * n..(t + 1) * k * n];
        let out = &mut out[t * m * n..(t + 1) * m * n];
        matmul_2d(a, b, out, m, k, n, accumulate);
    }
}

fn matmul_2d(a: &[f32], b: &[f32], out: &mut [f32], m: usize, k: usize, n: usize, accumulate: bool) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU supports AVX2 and FMA (checked above); the function is the
            // portable one compiled with wider vectors and FMA instructions (same bits: a
            // fused multiply-add is exactly specified; elsewhere `mul_add` computes it in
            // software).
            unsafe { matmul_2d_avx2(a, b, out, m, k, n, accumulate) };
            return;
        }
    }
    matmul_2d_portable(a, b, out, m, k, n, accumulate);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn matmul_2d_avx2(a: &[f32], b: &[f32], out: &mut [f32], m: usize, k: usize, n: usize, accumulate: bool) {
    matmul_2d_portable(a, b, out, m, k, n, accumulate);
}

#[inline(always)]
fn matmul_2d_portable(a: &[f32], b: &[f32], out: &mut [f32], m: usize, k: usize, n: usize, accumulate: bool) {
    // Narrow outputs (n < 16, e.g. one core's 8 output channels) take 8-row blocks, so that
    // 8 independent accumulators keep the FMA pipelines busy as 4 x 16 blocks do.
    let tall = n < 16;
    let mut i = 0;
    while i < m {
        let rows = match m - i {
            8.. if tall => 8,
            4.. => 4,
            _ => 1,
        };
        let mut j = 0;
        while j < n {
            let cols = n - j;
            match (rows, cols) {
                (8, 8..) => tile::<8, 8>(a, b, out, k, n, i, j, accumulate),
                (8, _) => tile::<8, 1>(a, b, out, k, n, i, j, accumulate),
                (4, 16..) => tile::<4, 16>(a, b, out, k, n, i, j, accumulate),
                (4, 8..) => tile::<4, 8>(a, b, out, k, n, i, j, accumulate),
                (4, _) => tile::<4, 1>(a, b, out, k, n, i, j, accumulate),
                (_, 16..) => tile::<1, 16>(a, b, out, k, n, i, j, accumulate),
                (_, 8..) => tile::<1, 8>(a, b, out, k, n, i, j, accumulate),
                _ => tile::<1, 1>(a, b, out, k, n, i, j, accumulate),
            }
            j += match cols {
                16.. => 16,
                8.. => 8,
                _ => 1,
            };
        }
        i += rows;
    }
}

/// One `MR x NR` block of the output at row `i0`, column `j0`, accumulated in registers.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn tile<const MR: usize, const NR: usize>(
    a: &[f32],
    b: &[f32],
    out: &mut [f32],
    k: usize,
    n: usize,
    i0: usize,
    j0: usize,
    accumulate: bool,
) {
    let mut acc = [[0.0f32; NR]; MR];
    if accumulate {
        for (r, row) in acc.iter_mut().enumerate() {
            row.copy_from_slice(&out[(i0 + r) * n + j0..(i0 + r) * n + j0 + NR]);
        }
    }
    let a_rows: [&[f32]; MR] = std::array::from_fn(|r| &a[(i0 + r) * k..(i0 + r + 1) * k]);
    for p in 0..k {
        let b_row: &[f32; NR] = match b[p * n + j0..p * n + j0 + NR].try_into() {
            Ok(r) => r,
            Err(_) => return, // unreachable: the slice has NR elements
        };
        for r in 0..MR {
            let x = a_rows[r][p];
            for c in 0..NR {
                acc[r][c] = x.mul_add(b_row[c], acc[r][c]);
            }
        }
    }
    for (r, row) in acc.iter().enumerate() {
        out[(i0 + r) * n + j0..(i0 + r) * n + j0 + NR].copy_from_slice(row);
    }
}

/// One row of a binary function: `dst[j] = f(x[j * kx], y[j * ky])`, with contiguous and
/// broadcast (step 0) operands as loops of their own, which the compiler vectorises.
#[inline(always)]
fn row2(dst: &mut [f32], x: &[f32], kx: usize, y: &[f32], ky: usize, f: impl Fn(f32, f32) -> f32) {
    let len = dst.len();
    match (kx, ky) {
        (1, 1) => {
            for ((d, &a), &b) in dst.iter_mut().zip(&x[..len]).zip(&y[..len]) {
                *d = f(a, b);
            }
        }
        (1, 0) => {
            let b = y[0];
            for (d, &a) in dst.iter_mut().zip(&x[..len]) {
                *d = f(a, b);
            }
        }
        (0, 1) => {
            let a = x[0];
            for (d, &b) in dst.iter_mut().zip(&y[..len]) {
                *d = f(a, b);
            }
        }
        _ => {
            for (j, d) in dst.iter_mut().enumerate() {
                *d = f(x[j * kx], y[j * ky]);
            }
        }
    }
}

/// FLOPs the timing model charges for `op` (matmul `2 m n k`, elementwise one per output
/// element, reduction one per input element, pure data movement none).
pub(crate) fn flops(op: &KernelOp, ins: &[&[usize]], out_shape: &[usize]) -> u64 {
    let out = numel(out_shape).unwrap_or(0) as u64;
    match op {
        KernelOp::MatMul { epilogue, .. } => {
            let k = ins.first().and_then(|a| a.last()).copied().unwrap_or(0) as u64;
            2 * out * k + fused_flops(epilogue, out)
        }
        KernelOp::Unary { op: UnaryOp::Copy }
        | KernelOp::Transpose { .. }
        | KernelOp::Reshape
        | KernelOp::Slice { .. }
        | KernelOp::Pad { .. }
        | KernelOp::Iota { .. }
        | KernelOp::Embedding
        | KernelOp::EmbeddingPart { .. } => 0,
        KernelOp::EmbeddingGrad { .. } => ins.first().and_then(|s| numel(s)).unwrap_or(0) as u64,
        KernelOp::Unary { .. }
        | KernelOp::Binary { .. }
        | KernelOp::Select
        | KernelOp::Scale { .. }
        | KernelOp::Convert { .. }
        | KernelOp::Random { .. } => out,
        KernelOp::ReduceSum { .. } | KernelOp::ReduceMax { .. } => ins.first().and_then(|s| numel(s)).unwrap_or(0) as u64,
        KernelOp::Fused { steps } => fused_flops(steps, out),
    }
}

/// One FLOP per output element per arithmetic step (a select moves, it does not compute).
pub(crate) fn fused_flops(steps: &[FusedStep], out: u64) -> u64 {
    out * steps.iter().filter(|s| s.f != FusedFn::Select).count() as u64
}

/// `KernelOp::Random`: writes into `out` the uniform values in `[0, 1)` of the box at
/// `offsets` (of size `out_shape`) of a tensor of `shape`, from `(seed, stream, row-major index)`.
pub(crate) fn random_into(seed: u64, stream: u64, offsets: &[usize], shape: &[usize], out_shape: &[usize], out: &mut [f32]) {
    let (st, ost) = (strides(shape), strides(out_shape));
    let key = stream_key(seed, stream);
    for (j, slot) in out.iter_mut().enumerate() {
        let k: usize = (0..out_shape.len()).map(|d| (offsets[d] + (j / ost[d]) % out_shape[d]) * st[d]).sum();
        *slot = uniform(key, k as u64);
    }
}

/// The uniform value of element `k` of the random stream `key` (24 random bits).
pub fn uniform(key: u64, k: u64) -> f32 {
    (mix(key ^ mix(k)) >> 40) as f32 / (1u64 << 24) as f32
}

/// The stream key of `(seed, stream)` for [`uniform`].
pub fn stream_key(seed: u64, stream: u64) -> u64 {
    mix(seed ^ mix(stream.wrapping_add(0x9e37_79b9_7f4a_7c15)))
}

/// SplitMix64's finaliser: a bijective 64-bit mix.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
