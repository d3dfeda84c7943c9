//! Functional semantics of the compute kernels, in `f32`.
//!
//! Pure functions from input arrays (shape + row-major data) to the output array. They
//! assume shapes that passed [`crate::program::check_kernel`]; the simulator validates
//! before it calls them. NaN and infinities propagate as in eager PyTorch; nothing here
//! rejects a value.

use crate::program::{BinaryOp, KernelOp, UnaryOp};
use crate::shape::{broadcast_strides, numel, strided_offsets, strides};

/// One input array: its shape and row-major data.
pub(crate) type Array<'a> = (&'a [usize], &'a [f32]);

/// Runs `op` on `ins` producing an `out_shape` array; `old_out` is the output buffer's
/// current contents (read by accumulating matmuls).
pub(crate) fn run(
    op: &KernelOp,
    ins: &[Array<'_>],
    out_shape: &[usize],
    old_out: &[f32],
) -> Vec<f32> {
    let n = numel(out_shape).unwrap_or(0);
    match op {
        KernelOp::MatMul { accumulate } => {
            let mut out = if *accumulate {
                old_out.to_vec()
            } else {
                vec![0.0; n]
            };
            matmul(ins[0], ins[1], &mut out);
            out
        }
        KernelOp::Unary { op } => ins[0].1.iter().map(|&x| unary(*op, x)).collect(),
        // The rounding needs the scale's bias and counts flags: the simulator applies it.
        KernelOp::Convert { .. } => ins[0].1.to_vec(),
        // The values need the run's seed: the simulator draws them (`random`).
        KernelOp::Random { .. } => vec![0.0; n],
        KernelOp::Scale { factor } => ins[0].1.iter().map(|&x| x * factor).collect(),
        KernelOp::Binary { op } => {
            let a = gather(ins[0], out_shape);
            let b = gather(ins[1], out_shape);
            a.iter().zip(&b).map(|(&x, &y)| binary(*op, x, y)).collect()
        }
        KernelOp::Select => {
            let c = gather(ins[0], out_shape);
            let a = gather(ins[1], out_shape);
            let b = gather(ins[2], out_shape);
            (0..n)
                .map(|i| if c[i] != 0.0 { a[i] } else { b[i] })
                .collect()
        }
        KernelOp::ReduceSum { dims } | KernelOp::ReduceMax { dims } => {
            let (shape, data) = ins[0];
            let is_max = matches!(op, KernelOp::ReduceMax { .. });
            // Walk the input in row-major order; each element lands on its keepdim slot.
            let out_strides = strides(out_shape);
            let to_out: Vec<usize> = (0..shape.len())
                .map(|d| if dims.contains(&d) { 0 } else { out_strides[d] })
                .collect();
            let mut out = vec![if is_max { f32::NEG_INFINITY } else { 0.0f32 }; n];
            for (&x, o) in data.iter().zip(strided_offsets(shape, &to_out)) {
                if !is_max {
                    out[o] += x;
                } else if x.is_nan() || x > out[o] {
                    // NaN wins and stays (a NaN slot is never replaced: NaN > x is false).
                    if !out[o].is_nan() {
                        out[o] = x;
                    }
                }
            }
            out
        }
        KernelOp::Transpose { perm } => {
            let (shape, data) = ins[0];
            let st = strides(shape);
            let walk: Vec<usize> = perm.iter().map(|&p| st[p]).collect();
            strided_offsets(out_shape, &walk)
                .into_iter()
                .map(|i| data[i])
                .collect()
        }
        KernelOp::Reshape => ins[0].1.to_vec(),
        KernelOp::Slice { offsets, strides: steps } => {
            let (shape, data) = ins[0];
            let st = strides(shape);
            let base: usize = offsets.iter().zip(&st).map(|(o, s)| o * s).sum();
            let walk: Vec<usize> = steps.iter().zip(&st).map(|(k, s)| k * s).collect();
            strided_offsets(out_shape, &walk).into_iter().map(|i| data[base + i]).collect()
        }
        KernelOp::Embedding => {
            let ((ts, table), (_, ids)) = (ins[0], ins[1]);
            let d = ts[1];
            let mut out = Vec::with_capacity(n);
            for &id in ids {
                let row = id as usize * d;
                out.extend_from_slice(&table[row..row + d]);
            }
            out
        }
        KernelOp::EmbeddingGrad { offset, skip } => {
            let ((gs, grad), (_, ids)) = (ins[0], ins[1]);
            let d = gs[gs.len() - 1];
            let rows = out_shape[0];
            let mut out = vec![0.0f32; n];
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
            out
        }
        KernelOp::Iota { dim, start } => {
            let st = strides(out_shape);
            (0..n).map(|i| (start + (i / st[*dim]) % out_shape[*dim]) as f32).collect()
        }
        KernelOp::Pad { low, interior, value } => {
            let (shape, data) = ins[0];
            let st = strides(out_shape);
            let base: usize = low.iter().zip(&st).map(|(o, s)| o * s).sum();
            let walk: Vec<usize> = interior.iter().zip(&st).map(|(k, s)| (k + 1) * s).collect();
            let mut out = vec![*value; n];
            for (&x, o) in data.iter().zip(strided_offsets(shape, &walk)) {
                out[base + o] = x;
            }
            out
        }
    }
}

/// `I64` values are carried as `f32`, which holds every integer of magnitude below 2^24
/// exactly; sums, differences, products, maxima and selections of such integers are then
/// exact too, as long as the result stays below the limit.
pub(crate) const EXACT_INT_LIMIT: f32 = 16_777_216.0;

/// Check that a buffer of `I64` values holds only integers below [`EXACT_INT_LIMIT`]; an
/// error names the first offending value, so an integer result can never be silently rounded.
pub(crate) fn check_exact_ints(data: &[f32], what: &str) -> Result<(), crate::error::RuntimeError> {
    match data.iter().find(|x| !(x.abs() < EXACT_INT_LIMIT && x.fract() == 0.0)) {
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

/// The input broadcast to `out_shape`, materialised row-major.
fn gather((shape, data): Array<'_>, out_shape: &[usize]) -> Vec<f32> {
    if shape == out_shape {
        return data.to_vec();
    }
    let st = broadcast_strides(shape, out_shape);
    strided_offsets(out_shape, &st)
        .into_iter()
        .map(|i| data[i])
        .collect()
}

/// `out += a @ b`, i-k-j loop order, each product added into `out` in k order. Rank 2 or
/// batched rank 3.
fn matmul((a_shape, a): Array<'_>, (b_shape, b): Array<'_>, out: &mut [f32]) {
    let (bt, m, k, n) = if a_shape.len() == 3 {
        (a_shape[0], a_shape[1], a_shape[2], b_shape[2])
    } else {
        (1, a_shape[0], a_shape[1], b_shape[1])
    };
    for t in 0..bt {
        let a = &a[t * m * k..(t + 1) * m * k];
        let b = &b[t * k * n..(t + 1) * k * n];
        let out = &mut out[t * m * n..(t + 1) * m * n];
        for i in 0..m {
            let row = &mut out[i * n..(i + 1) * n];
            for p in 0..k {
                let aip = a[i * k + p];
                let brow = &b[p * n..(p + 1) * n];
                for (o, &bv) in row.iter_mut().zip(brow) {
                    *o += aip * bv;
                }
            }
        }
    }
}

fn unary(op: UnaryOp, x: f32) -> f32 {
    match op {
        UnaryOp::Relu => {
            if x.is_nan() || x > 0.0 {
                x
            } else {
                0.0
            }
        }
        UnaryOp::Neg => -x,
        UnaryOp::Exp => x.exp(),
        UnaryOp::Log => x.ln(),
        UnaryOp::Sqrt => x.sqrt(),
        UnaryOp::Rsqrt => 1.0 / x.sqrt(),
        UnaryOp::Abs => x.abs(),
        UnaryOp::Tanh => x.tanh(),
        UnaryOp::Sigmoid => 1.0 / (1.0 + (-x).exp()),
        UnaryOp::Reciprocal => 1.0 / x,
        UnaryOp::Erf => libm::erff(x),
        UnaryOp::Copy => x,
    }
}

fn binary(op: BinaryOp, a: f32, b: f32) -> f32 {
    let truth = |t: bool| if t { 1.0 } else { 0.0 };
    match op {
        BinaryOp::Add => a + b,
        BinaryOp::Sub => a - b,
        BinaryOp::Mul => a * b,
        BinaryOp::Div => a / b,
        BinaryOp::Max => {
            if a.is_nan() || b.is_nan() {
                f32::NAN
            } else {
                a.max(b)
            }
        }
        BinaryOp::Min => {
            if a.is_nan() || b.is_nan() {
                f32::NAN
            } else {
                a.min(b)
            }
        }
        BinaryOp::Pow => a.powf(b),
        BinaryOp::Eq => truth(a == b),
        BinaryOp::Ne => truth(a != b),
        BinaryOp::Lt => truth(a < b),
        BinaryOp::Le => truth(a <= b),
        BinaryOp::Gt => truth(a > b),
        BinaryOp::Ge => truth(a >= b),
    }
}

/// FLOPs the timing model charges for `op` (matmul `2 m n k`, elementwise one per output
/// element, reduction one per input element, pure data movement none).
pub(crate) fn flops(op: &KernelOp, ins: &[&[usize]], out_shape: &[usize]) -> u64 {
    let out = numel(out_shape).unwrap_or(0) as u64;
    match op {
        KernelOp::MatMul { .. } => {
            let k = ins.first().and_then(|a| a.last()).copied().unwrap_or(0) as u64;
            2 * out * k
        }
        KernelOp::Unary { op: UnaryOp::Copy }
        | KernelOp::Transpose { .. }
        | KernelOp::Reshape
        | KernelOp::Slice { .. }
        | KernelOp::Pad { .. }
        | KernelOp::Iota { .. }
        | KernelOp::Embedding => 0,
        KernelOp::EmbeddingGrad { .. } => ins.first().and_then(|s| numel(s)).unwrap_or(0) as u64,
        KernelOp::Unary { .. }
        | KernelOp::Binary { .. }
        | KernelOp::Select
        | KernelOp::Scale { .. }
        | KernelOp::Convert { .. }
        | KernelOp::Random { .. } => out,
        KernelOp::ReduceSum { .. } | KernelOp::ReduceMax { .. } => ins.first().and_then(|s| numel(s)).unwrap_or(0) as u64,
    }
}

/// `KernelOp::Random`: uniform values in `[0, 1)` for the box at `offsets` (of size
/// `out_shape`) of a tensor of `shape`, from `(seed, stream, row-major index)` only.
pub(crate) fn random(seed: u64, stream: u64, offsets: &[usize], shape: &[usize], out_shape: &[usize]) -> Vec<f32> {
    let n = numel(out_shape).unwrap_or(0);
    let (st, ost) = (strides(shape), strides(out_shape));
    let key = stream_key(seed, stream);
    (0..n)
        .map(|j| {
            let k: usize = (0..out_shape.len()).map(|d| (offsets[d] + (j / ost[d]) % out_shape[d]) * st[d]).sum();
            uniform(key, k as u64)
        })
        .collect()
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
