//! Legalization of the shape-moving and neural-network op families: slicing, padding,
//! concatenation, splits, convolution (forward and backward, grouped and depthwise, any
//! stride/padding/dilation, 1-3 spatial dims) and inference batch norm.
//!
//! Convolution is lowered the im2col way, all in `dojo` ops the mesh already runs: every
//! kernel tap is a strided `slice` of the padded input, the taps are joined into columns
//! `[G, M, Cg*T]` (`M` = output positions x batch, outermost output dim first so that it can
//! stay split over the mesh), and one batched `matmul` per conv multiplies them by the weights
//! `[G, Cg*T, OC/G]`; a large convolution's forward skips the columns and multiplies tap by
//! tap ([`Conv::per_tap`]). The backward pass is the transpose of the same linear maps: weight
//! gradients are `grad^T @ cols` (over slabs of the output positions, summed), input
//! gradients are `grad @ W` scattered back tap by tap with `pad` (interior padding undoes the
//! stride) and summed.

use super::{Lx, LResult};
use crate::lower::{MAX_BLOCK_EDGE, MULTI_CHIP_MIN_SHARD_BYTES};
use dojo_compiler::{attr, Attr, ElemType, Op, TensorType, Value};

/// At least `n` tensor operands.
fn need(ins: &[Value], n: usize) -> Result<(), String> {
    if ins.len() < n {
        return Err(format!("expected at least {n} tensor operands, got {}", ins.len()));
    }
    Ok(())
}

fn is_float(e: ElemType) -> bool {
    matches!(e, ElemType::F32)
}

/// A torch-style start on a dim of `size`: negatives wrap, then clamp to 0..=size.
fn clamp_start(start: i64, size: usize) -> usize {
    let n = size as i64;
    (if start < 0 { (start + n).clamp(0, n) } else { start.min(n) }) as usize
}

/// The fewest channels (in and out) and input positions per sample of a convolution whose
/// input gradient is gathered ([`Conv::input_grad_conv`]). Gathered, it pays only where
/// `egraph-optimize` then takes Winograd; the backward of two 3x3 convolutions on `d1` with
/// the pass on, scattered -> gathered (us): 64 channels at 56 x 56 96.6 -> 93.0, 128 at 28 x
/// 28 73.7 -> 71.2, 256 at 28 x 28 205.1 -> 180.1, 96 at 35 x 35 69.7 -> 66.6; but 32 at 56 x
/// 56 36.6 -> 52.5, 64 at 14 x 14 12.2 -> 14.9 and 512 at 7 x 7 77.5 -> 78.0 (256 at 14 x 14
/// gained 69.4 -> 67.7 but is left out with them).
const GATHER_MIN_CHANNELS: usize = 64;
const GATHER_MIN_POSITIONS: usize = 28 * 28;

/// Geometry of one convolution, from its operand shapes and attributes.
pub(super) struct Conv {
    n: usize,
    c: usize,
    oc: usize,
    groups: usize,
    /// Input spatial sizes, kernel sizes, output spatial sizes.
    size: Vec<usize>,
    kernel: Vec<usize>,
    out: Vec<usize>,
    stride: Vec<usize>,
    padding: Vec<usize>,
    dilation: Vec<usize>,
}

impl Conv {
    fn from_op(op: &Op, x: &TensorType, w: &TensorType) -> Result<Conv, String> {
        if op.attr("transposed").and_then(Attr::as_bool).unwrap_or(false) {
            return Err("transposed convolution is not supported yet".into());
        }
        let k = x.rank().checked_sub(2).filter(|k| (1..=3).contains(k)).ok_or("convolution needs 1 to 3 spatial dims")?;
        if w.rank() != x.rank() {
            return Err(format!("weight of rank {} for an input of rank {}", w.rank(), x.rank()));
        }
        let per_dim = |name: &str| -> Result<Vec<usize>, String> {
            let v = op.attr(name).and_then(Attr::as_ints).ok_or(format!("missing attribute '{name}'"))?;
            let v: Vec<i64> = if v.len() == 1 { vec![v[0]; k] } else { v.to_vec() };
            if v.len() != k || v.iter().any(|&x| x < 0) {
                return Err(format!("'{name}' {v:?} does not fit {k} spatial dims"));
            }
            Ok(v.iter().map(|&x| x as usize).collect())
        };
        let (stride, padding, dilation) = (per_dim("stride")?, per_dim("padding")?, per_dim("dilation")?);
        let groups = op.attr("groups").and_then(Attr::as_int).unwrap_or(1);
        let (n, c, oc) = (x.shape[0], x.shape[1], w.shape[0]);
        if groups < 1 || c % groups as usize != 0 || oc % groups as usize != 0 || w.shape[1] * groups as usize != c {
            return Err(format!("groups={groups} does not fit {c} input and {oc} output channels"));
        }
        if stride.contains(&0) || dilation.contains(&0) {
            return Err("stride and dilation must be positive".into());
        }
        let size = x.shape[2..].to_vec();
        let kernel = w.shape[2..].to_vec();
        let mut out = Vec::with_capacity(k);
        for i in 0..k {
            let span = dilation[i] * (kernel[i] - 1) + 1;
            let padded = size[i] + 2 * padding[i];
            if padded < span {
                return Err(format!("kernel span {span} is larger than the padded input {padded}"));
            }
            out.push((padded - span) / stride[i] + 1);
        }
        Ok(Conv { n, c, oc, groups: groups as usize, size, kernel, out, stride, padding, dilation })
    }

    fn taps(&self) -> usize {
        self.kernel.iter().product()
    }

    /// Kernel offsets of tap `t` (row-major over the kernel dims).
    fn tap(&self, mut t: usize) -> Vec<usize> {
        let mut idx = vec![0; self.kernel.len()];
        for i in (0..self.kernel.len()).rev() {
            idx[i] = t % self.kernel[i];
            t /= self.kernel[i];
        }
        idx
    }

    fn positions(&self) -> usize {
        self.n * self.out.iter().product::<usize>()
    }

    /// Whether the columns' contraction dim runs tap-major (`T x Cg`) rather than channel-major
    /// (`Cg x T`): when a group has fewer channels than taps and the columns are large (above
    /// [`TAP_MAJOR_MIN_BYTES`]: the 3-channel 7x7 stem of an image model at batch 8). The
    /// mesh splits a merged dim on its outer factor, so the larger factor goes first (49 taps
    /// over 7 mesh columns rather than 3 channels over 3: 59 MB of columns for resnet18 at
    /// 8 x 224 x 224 do not fit on 48 cores). Otherwise channel-major, the order eager
    /// PyTorch's kernels sum in more closely: the order of a contraction changes the rounding,
    /// and a max pooling after the convolution routes its gradient by near-ties.
    fn tap_major(&self) -> bool {
        self.c / self.groups < self.taps() && self.columns_bytes() > TAP_MAJOR_MIN_BYTES
    }

    /// The f32 bytes of the columns (all groups): `positions x C x T x 4`.
    fn columns_bytes(&self) -> usize {
        self.positions() * self.c * self.taps() * 4
    }

    /// Whether the convolution's forward runs tap by tap (`y = sum over taps t of tap_t @ W_t`,
    /// each product added to the sum so far in its matmul's epilogue) rather than as one
    /// matmul of the columns: when the columns are large (above [`PER_TAP_MIN_BYTES`]) and a
    /// group has enough channels ([`PER_TAP_MIN_CHANNELS`]) for each tap's matmul to be worth
    /// its own SUMMA. The taps are cut as for the columns but never concatenated into a value
    /// T times the input's size and moved to the matmul: VGG-19's 224 x 224 convolutions
    /// (115 MB of columns) then fit one D1, and resnet50 at batch 8 on a tile runs 8 % faster.
    /// (All taps are alive before the first matmul, so the peak is about the columns' size,
    /// spread as the taps are.) The sum runs over taps outside and channels inside, rounded at
    /// each tap, not the columns' one channel-major chain: the values differ from the columns'
    /// in the last bits. The backward keeps the columns: tap by tap, the weight gradient's
    /// matmuls have small results over a long contraction, which SUMMA spreads over few cores
    /// (the columns' one has the same shape, split into slabs instead: `convolution_backward`).
    ///
    /// Only while a tap and a tap's product stay below [`PER_TAP_MAX_TAP_BYTES`]: larger ones
    /// spread over the chips of a multi-chip target, where every mesh op pays chip-edge latency
    /// and one matmul over the columns beats T small ones (resnet50 at batch 32 on a tile:
    /// 31.7 ms tap by tap for every large convolution, 29.2 ms with none). Legalization does
    /// not know the target, so the bound holds on one chip too, where a convolution with
    /// larger taps builds its columns, T times larger, which may then not fit.
    fn per_tap(&self) -> bool {
        let tap = self.positions() * self.c.max(self.oc) * 4;
        self.taps() > 1 && self.c / self.groups >= PER_TAP_MIN_CHANNELS && self.columns_bytes() > PER_TAP_MIN_BYTES && tap < PER_TAP_MAX_TAP_BYTES
    }

    /// Whether the forward multiplies the columns where they are, `[1, O..., N, K] @ [K, OC]`
    /// (every output position a row), rather than as `[1, M, K]`: one group and small
    /// weights (at most [`FLAT_MAX_WEIGHT_BYTES`], or [`FLAT_MAX_POINTWISE_BYTES`] for a 1x1
    /// kernel), which lowering replicates on every core holding rows of the columns, so the
    /// columns (T times the input) do not move to a matmul layout. Simulated (`graph_bench`,
    /// `d1`, e-graph off → on): SqueezeNet 228.9 → 131.3 µs / 194.7 → 112.3 µs, Inception-v3
    /// 1530 → 1461 / 1360 → 1293 µs, ResNeXt-50 1218 → 1202 / 1104 → 1087 µs, VGG-19
    /// 2813 → 2846 / 2794 → 2828 µs (its 3-channel stem); resnet50 at batch 8 on `tile` 8.14 →
    /// 7.36 ms. Larger weights cost more to replicate than the columns' move (64 → 256 KiB:
    /// SqueezeNet 150.8 → 174.8 µs), and 64 KiB pointwise ones made ResNeXt-50 with the
    /// e-graph 1087 → 1122 µs.
    fn flat(&self) -> bool {
        let bytes = self.c * self.taps() * self.oc * 4;
        self.groups == 1 && bytes <= if self.taps() > 1 { FLAT_MAX_WEIGHT_BYTES } else { FLAT_MAX_POINTWISE_BYTES }
    }

    /// The convolution whose forward is this one's input gradient, when there is a plain one
    /// that Winograd F(2x2, 3x3) may run: a 3x3 kernel, one group, unit strides and dilations,
    /// at most `kernel - 1` padding and at least [`GATHER_MIN_CHANNELS`] and
    /// [`GATHER_MIN_POSITIONS`]. Its input is the output gradient `[N, OC, O...]`, padded by
    /// `kernel - 1 - padding`; its weight the kernel flipped with its channels swapped
    /// ([`Lx::flipped_weight`]); its output the input's size. Written so, an input gradient gathers its taps as a forward does (and
    /// `egraph-optimize` finds the same patterns in it, Winograd's among them) instead of
    /// scattering each tap's product into the padded input.
    fn input_grad_conv(&self) -> Option<Conv> {
        let plain = self.groups == 1 && self.kernel == [3, 3] && self.stride.iter().chain(&self.dilation).all(|&s| s == 1);
        let large = self.c.min(self.oc) >= GATHER_MIN_CHANNELS && self.size.iter().product::<usize>() >= GATHER_MIN_POSITIONS;
        if !plain || !large || self.padding.iter().zip(&self.kernel).any(|(&p, &k)| p + 1 > k) {
            return None;
        }
        let padding = self.padding.iter().zip(&self.kernel).map(|(&p, &k)| k - 1 - p).collect();
        Some(Conv {
            n: self.n,
            c: self.oc,
            oc: self.c,
            groups: 1,
            size: self.out.clone(),
            kernel: self.kernel.clone(),
            out: self.size.clone(),
            stride: self.stride.clone(),
            padding,
            dilation: self.dilation.clone(),
        })
    }

    /// `[a, b]` if channel-major, else `[b, a]` (see [`Conv::tap_major`]).
    fn k_order<T>(&self, channels: T, taps: T) -> [T; 2] {
        if self.tap_major() {
            [taps, channels]
        } else {
            [channels, taps]
        }
    }

    fn padded(&self) -> Vec<usize> {
        (0..self.size.len()).map(|i| self.size[i] + 2 * self.padding[i]).collect()
    }
}

/// Columns (f32 bytes) above which a convolution with fewer channels than taps orders them
/// tap-major ([`Conv::tap_major`]).
const TAP_MAJOR_MIN_BYTES: usize = 16 << 20;

/// Columns (f32 bytes) above which a convolution runs tap by tap ([`Conv::per_tap`]).
const PER_TAP_MIN_BYTES: usize = 32 << 20;

/// The bound on a tap and a tap's product (f32 bytes) of a convolution run tap by tap
/// ([`Conv::per_tap`]): below it, lowering keeps a value on one chip's 16 x 16 block (shards
/// below 64 KiB).
const PER_TAP_MAX_TAP_BYTES: usize = MULTI_CHIP_MIN_SHARD_BYTES as usize * (MAX_BLOCK_EDGE * MAX_BLOCK_EDGE) as usize;

/// The largest weights (f32 bytes) of a convolution whose forward multiplies its columns
/// where they are ([`Conv::flat`]).
const FLAT_MAX_WEIGHT_BYTES: usize = 64 << 10;

/// [`FLAT_MAX_WEIGHT_BYTES`] for a 1x1 kernel (no taps: the columns are the input).
const FLAT_MAX_POINTWISE_BYTES: usize = 32 << 10;

/// The fewest channels per group for a convolution to run tap by tap ([`Conv::per_tap`]).
const PER_TAP_MIN_CHANNELS: usize = 16;

/// The fewest output positions per slab of a weight gradient's split contraction (see
/// `convolution_backward`). Measured on resnet50's training backward on `tile` (simulated
/// ms, batch 8 / batch 2): one slab 15.55 / 3.98; slabs of >= 64 positions 14.05 / 3.78;
/// >= 32 and >= 128 were slower than 64 (about 15.3 / 4.4 and 14.8 / 4.0).
const WGRAD_SLAB_ROWS: usize = 64;

/// The windows kernel taps read from one value (see [`Lx::windows`]).
pub(super) struct Windows {
    x: Value,
    /// The first spatial dim, and how many dims follow the spatial ones.
    first: usize,
    trail: usize,
    stride: Vec<usize>,
    out: Vec<usize>,
}

/// Geometry of a 2-D max pooling over `[N, C, H, W]`.
pub(super) struct Pool {
    size: [usize; 2],
    kernel: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 2],
    dilation: [usize; 2],
    out: [usize; 2],
}

impl Pool {
    /// From the op's attributes; `y` (values or their gradient) gives the output size, which
    /// covers ceil_mode.
    fn from_op(op: &Op, x: &TensorType, y: &TensorType) -> Result<Pool, String> {
        if x.rank() != 4 || y.rank() != 4 {
            return Err("max pooling is supported on [N, C, H, W] tensors".into());
        }
        let pair = |name: &str, default: Option<[usize; 2]>| -> Result<[usize; 2], String> {
            match op.attr(name).and_then(Attr::as_ints) {
                Some([a]) if *a >= 0 => Ok([*a as usize; 2]),
                Some([a, b]) if *a >= 0 && *b >= 0 => Ok([*a as usize, *b as usize]),
                Some([]) | None => default.ok_or(format!("missing attribute '{name}'")),
                Some(v) => Err(format!("'{name}' {v:?} is not one or two sizes")),
            }
        };
        let kernel = pair("kernel_size", None)?;
        let stride = pair("stride", Some(kernel))?;
        let padding = pair("padding", Some([0, 0]))?;
        let dilation = pair("dilation", Some([1, 1]))?;
        if kernel.contains(&0) || stride.contains(&0) || dilation.contains(&0) {
            return Err("kernel size, stride and dilation must be positive".into());
        }
        let size = [x.shape[2], x.shape[3]];
        let out = [y.shape[2], y.shape[3]];
        for i in 0..2 {
            // Every window starts inside the input or its low padding (PyTorch's rule).
            if out[i] == 0 || (out[i] - 1) * stride[i] >= size[i] + padding[i] {
                return Err("a pooling window starts outside the input".into());
            }
        }
        Ok(Pool { size, kernel, stride, padding, dilation, out })
    }

    fn taps(&self) -> usize {
        self.kernel[0] * self.kernel[1]
    }

    fn tap(&self, t: usize) -> (usize, usize) {
        (t / self.kernel[1], t % self.kernel[1])
    }

    fn low(&self) -> [usize; 4] {
        [0, 0, self.padding[0], self.padding[1]]
    }

    /// Padding after the input so that every window's last tap exists.
    fn high(&self) -> [usize; 4] {
        let need = |i: usize| (self.out[i] - 1) * self.stride[i] + self.dilation[i] * (self.kernel[i] - 1) + 1;
        let h = |i: usize| need(i).saturating_sub(self.size[i] + self.padding[i]);
        [0, 0, h(0), h(1)]
    }

    fn padded(&self) -> [usize; 2] {
        let (l, h) = (self.low(), self.high());
        [self.size[0] + l[2] + h[2], self.size[1] + l[3] + h[3]]
    }

    /// Every tap's window of the padded `xp` (`[N or 1, C or 1, ...]`), padding with `fill`.
    fn taps_of(&self, lx: &mut Lx<'_>, xp: Value, fill: f64) -> Vec<Value> {
        let offsets: Vec<Vec<usize>> = (0..self.taps())
            .map(|t| {
                let (kh, kw) = self.tap(t);
                vec![kh * self.dilation[0], kw * self.dilation[1]]
            })
            .collect();
        lx.window_taps(xp, 2, &offsets, &self.stride, &self.out, fill)
    }

    /// `[1, 1, OH, OW]` int64: the flat input position `h*W + w` tap `t` reads (negative or
    /// out of the row inside the padding; those are never selected).
    fn positions(&self, lx: &mut Lx<'_>, t: usize) -> Result<Value, String> {
        let (kh, kw) = self.tap(t);
        let i64t = ElemType::I64;
        let w = self.size[1] as f64;
        let rows = lx.iota(vec![1, 1, self.out[0], 1], 2, i64t);
        let cols = lx.iota(vec![1, 1, 1, self.out[1]], 3, i64t);
        let rs = lx.constant(self.stride[0] as f64 * w, i64t);
        let cs = lx.constant(self.stride[1] as f64, i64t);
        let rows = lx.binary("mul", rows, rs, i64t)?;
        let cols = lx.binary("mul", cols, cs, i64t)?;
        let base = (kh * self.dilation[0]) as f64 * w - self.padding[0] as f64 * w + (kw * self.dilation[1]) as f64
            - self.padding[1] as f64;
        let pos = lx.binary("add", rows, cols, i64t)?;
        let b = lx.constant(base, i64t);
        lx.binary("add", pos, b, i64t)
    }
}

impl<'a> Lx<'a> {
    fn ty(&self, shape: Vec<usize>, like: Value) -> TensorType {
        TensorType::new(shape, self.t(like).elem)
    }

    pub(super) fn reshape_to(&mut self, x: Value, shape: Vec<usize>) -> Value {
        let t = self.ty(shape, x);
        self.reshape(x, &t)
    }

    pub(super) fn transpose(&mut self, x: Value, perm: &[usize]) -> Value {
        if perm.iter().enumerate().all(|(i, &p)| i == p) {
            return x;
        }
        let shape = perm.iter().map(|&p| self.t(x).shape[p]).collect();
        let t = self.ty(shape, x);
        let perm = perm.iter().map(|&p| p as i64).collect();
        self.emit("transpose", vec![x], vec![attr("perm", Attr::Ints(perm))], t)
    }

    /// `x[offsets + j*strides]` with `sizes` elements per dim.
    pub(super) fn slice(&mut self, x: Value, offsets: &[usize], strides: &[usize], sizes: Vec<usize>) -> Value {
        let t = self.t(x);
        if t.shape == sizes {
            return x;
        }
        let ints = |v: &[usize]| Attr::Ints(v.iter().map(|&x| x as i64).collect());
        let ty = self.ty(sizes, x);
        self.emit("slice", vec![x], vec![attr("offsets", ints(offsets)), attr("strides", ints(strides))], ty)
    }

    /// `x` placed at `low + i*(interior+1)` in a tensor of `value` with `high` more elements.
    pub(super) fn pad(&mut self, x: Value, low: &[usize], high: &[usize], interior: &[usize], value: f64) -> Value {
        if low.iter().chain(high).chain(interior).all(|&v| v == 0) {
            return x;
        }
        let t = self.t(x);
        let shape = (0..t.rank()).map(|d| low[d] + high[d] + t.shape[d] + t.shape[d].saturating_sub(1) * interior[d]).collect();
        let ints = |v: &[usize]| Attr::Ints(v.iter().map(|&x| x as i64).collect());
        let ty = self.ty(shape, x);
        self.emit(
            "pad",
            vec![x],
            vec![attr("high", ints(high)), attr("interior", ints(interior)), attr("low", ints(low)), attr("value", Attr::Float(value))],
            ty,
        )
    }

    pub(super) fn concat(&mut self, xs: Vec<Value>, dim: usize) -> Value {
        if xs.len() == 1 {
            return xs[0];
        }
        let mut shape = self.t(xs[0]).shape;
        shape[dim] = xs.iter().map(|&x| self.t(x).shape[dim]).sum();
        let ty = self.ty(shape, xs[0]);
        self.emit("concat", xs, vec![attr("dim", Attr::Int(dim as i64))], ty)
    }

    fn matmul(&mut self, a: Value, b: Value) -> Value {
        let (ta, tb) = (self.t(a), self.t(b));
        let mut shape = ta.shape[..ta.rank() - 1].to_vec();
        shape.push(tb.shape[tb.rank() - 1]);
        let ty = TensorType::new(shape, ta.elem);
        self.emit("matmul", vec![a, b], vec![], ty)
    }

    /// The window `start..end` (step `step`) of `x` along `dim`.
    pub(super) fn slice_dim(&mut self, x: Value, dim: usize, start: usize, len: usize, step: usize) -> Value {
        let t = self.t(x);
        let mut offsets = vec![0; t.rank()];
        let mut strides = vec![1; t.rank()];
        let mut sizes = t.shape.clone();
        offsets[dim] = start;
        strides[dim] = step;
        sizes[dim] = len;
        self.slice(x, &offsets, &strides, sizes)
    }

    /// The window of a slice op (`slice`, `slice_backward`, `slice_scatter`) on a tensor of
    /// type `whole`: `(dim, first index, step)`. The result type gives the length. With
    /// `required`, a missing `start` is an error (the schema has no default there).
    fn slice_window(&self, op: &Op, whole: &TensorType, required: bool) -> Result<(usize, usize, usize), String> {
        let dim = self.dim_attr(op, "dim", whole.rank())?;
        let start = match op.attr("start").and_then(Attr::as_int) {
            Some(s) => s,
            None if required => return Err("missing attribute 'start'".into()),
            None => 0,
        };
        if required && op.attr("end").and_then(Attr::as_int).is_none() {
            return Err("missing attribute 'end'".into());
        }
        let step = op.attr("step").and_then(Attr::as_int).unwrap_or(1);
        if step < 1 {
            return Err(format!("slice step {step} must be positive"));
        }
        Ok((dim, clamp_start(start, whole.shape.get(dim).copied().unwrap_or(1)), step as usize))
    }

    /// aten.slice.Tensor(x, dim, start, end, step).
    pub(super) fn slice_tensor(&mut self, op: &Op, x: Value, out: &TensorType) -> LResult {
        let (dim, start, step) = self.slice_window(op, &self.t(x), false)?;
        Ok(vec![self.slice_dim(x, dim, start, out.shape[dim], step)])
    }

    /// aten.slice_backward(grad, input_sizes, dim, start, end, step): grad placed in zeros.
    pub(super) fn slice_backward(&mut self, op: &Op, g: Value, out: &TensorType) -> LResult {
        let (dim, start, step) = self.slice_window(op, out, true)?;
        Ok(vec![self.place_along(g, dim, start, step, out)?])
    }

    /// aten.slice_scatter(self, src, dim, start, end, step): `self` with the window replaced.
    pub(super) fn slice_scatter(&mut self, op: &Op, x: Value, src: Value, out: &TensorType) -> LResult {
        let (dim, start, step) = self.slice_window(op, out, false)?;
        let placed = self.place_along(src, dim, start, step, out)?;
        let truth = self.constant(1.0, ElemType::I1);
        let ones = self.emit("broadcast", vec![truth], vec![], TensorType::new(self.t(src).shape, ElemType::I1));
        let inside = self.place_along(ones, dim, start, step, &TensorType::new(out.shape.clone(), ElemType::I1))?;
        Ok(vec![self.select(inside, placed, x, out.elem)?])
    }

    /// `g` (a strided window of a tensor of type `out` along `dim`) placed in zeros.
    fn place_along(&mut self, g: Value, dim: usize, start: usize, step: usize, out: &TensorType) -> Result<Value, String> {
        let r = out.rank();
        let n = self.t(g).shape.get(dim).copied().ok_or("the window has the wrong rank")?;
        let (mut low, mut high, mut interior) = (vec![0; r], vec![0; r], vec![0; r]);
        low[dim] = start;
        interior[dim] = step - 1;
        let end = start + (n.max(1) - 1) * step + 1;
        high[dim] = out.shape[dim].checked_sub(end).ok_or(format!("a window ending at {end} does not fit in {}", out.shape[dim]))?;
        Ok(self.pad(g, &low, &high, &interior, 0.0))
    }

    /// aten.select.int(x, dim, index).
    pub(super) fn select_int(&mut self, op: &Op, x: Value, out: &TensorType) -> LResult {
        let t = self.t(x);
        let dim = self.dim_attr(op, "dim", t.rank())?;
        let index = self.index_attr(op, "index", t.shape[dim])?;
        let s = self.slice_dim(x, dim, index, 1, 1);
        Ok(vec![self.reshape(s, out)])
    }

    /// aten.select_backward(grad, input_sizes, dim, index).
    pub(super) fn select_backward(&mut self, op: &Op, g: Value, out: &TensorType) -> LResult {
        let dim = self.dim_attr(op, "dim", out.rank())?;
        let index = self.index_attr(op, "index", out.shape[dim])?;
        let mut shape = out.shape.clone();
        shape[dim] = 1;
        let g = self.reshape_to(g, shape);
        Ok(vec![self.place_along(g, dim, index, 1, out)?])
    }

    /// aten.cat(tensors, dim).
    pub(super) fn cat(&mut self, op: &Op, xs: Vec<Value>, out: &TensorType) -> LResult {
        let dim = self.dim_attr(op, "dim", out.rank())?;
        // Legacy cat skips 1-D empty tensors; those never reach here (no empty tensors).
        Ok(vec![self.concat(xs, dim)])
    }

    /// aten.split_with_sizes / split.Tensor: one slice per (present) result.
    pub(super) fn split(&mut self, op: &Op, x: Value, results: &[TensorType]) -> LResult {
        let t = self.t(x);
        let dim = self.dim_attr(op, "dim", t.rank())?;
        let mut at = 0;
        let mut out = Vec::new();
        for r in results {
            out.push(self.slice_dim(x, dim, at, r.shape[dim], 1));
            at += r.shape[dim];
        }
        if at != t.shape[dim] {
            return Err("split results do not cover the input (a piece is empty or absent)".into());
        }
        Ok(out)
    }

    /// aten.constant_pad_nd(x, pad, value): pairs (before, after) from the last dim back;
    /// negative amounts crop.
    pub(super) fn constant_pad(&mut self, op: &Op, x: Value, out: &TensorType) -> LResult {
        let t = self.t(x);
        let pads = op.attr("pad").and_then(Attr::as_ints).ok_or("missing attribute 'pad'")?.to_vec();
        let value = op.attr("value").and_then(Attr::as_float).unwrap_or(0.0);
        if pads.len() % 2 != 0 || pads.len() / 2 > t.rank() {
            return Err(format!("pad {pads:?} does not fit rank {}", t.rank()));
        }
        let r = t.rank();
        let (mut low, mut high) = (vec![0i64; r], vec![0i64; r]);
        for (i, pair) in pads.chunks(2).enumerate() {
            low[r - 1 - i] = pair[0];
            high[r - 1 - i] = pair[1];
        }
        // Crop first (negative pads), then pad (positive ones).
        let mut offsets = vec![0; r];
        let mut sizes = t.shape.clone();
        for d in 0..r {
            let cut = (-low[d]).max(0) as usize + (-high[d]).max(0) as usize;
            if cut >= t.shape[d] {
                return Err("the padding crops a dimension to nothing".into());
            }
            offsets[d] = (-low[d]).max(0) as usize;
            sizes[d] -= cut;
        }
        let cropped = self.slice(x, &offsets, &vec![1; r], sizes);
        let pos = |v: &[i64]| v.iter().map(|&p| p.max(0) as usize).collect::<Vec<_>>();
        let y = self.pad(cropped, &pos(&low), &pos(&high), &vec![0; r], value);
        if self.t(y).shape != out.shape {
            return Err(format!("padding gives {:?}, the graph says {:?}", self.t(y).shape, out.shape));
        }
        Ok(vec![y])
    }

    /// The windows of `xp` (`[lead..., spatial..., trail...]`, the `k = stride.len()` spatial
    /// dims from dim `first`) that kernel taps read: for each tap's spatial offsets `o`, the
    /// elements `o + j*stride` for `j < out`, each `[lead..., out..., trail...]`. A stride
    /// above 1 is taken by viewing each spatial dim `H` as `[H/s, s]` (padding the end with
    /// `fill` to a multiple of `s`), so every tap is a unit-stride box: a core then fetches
    /// exactly the elements it needs, not the whole strided span.
    fn window_taps(&mut self, xp: Value, first: usize, offsets: &[Vec<usize>], stride: &[usize], out: &[usize], fill: f64) -> Vec<Value> {
        let w = self.windows(xp, first, offsets, stride, out, fill);
        offsets.iter().map(|o| self.window(&w, o)).collect()
    }

    /// The value the windows at `offsets` are cut from (see [`Lx::window_taps`]): `xp`
    /// itself, or with a stride above 1, `xp` viewed as whole stride steps. Each window is
    /// then its own op or two ([`Lx::window`]), which can go right before the op taking it.
    fn windows(&mut self, xp: Value, first: usize, offsets: &[Vec<usize>], stride: &[usize], out: &[usize], fill: f64) -> Windows {
        let shape = self.t(xp).shape;
        let k = stride.len();
        let windows = |x| Windows { x, first, trail: shape.len() - first - k, stride: stride.to_vec(), out: out.to_vec() };
        if stride.iter().all(|&s| s == 1) {
            return windows(xp);
        }
        let (lead, trail) = (&shape[..first], &shape[first + k..]);
        let unit: Vec<usize> = vec![1; shape.len()];
        let around = |mid: Vec<usize>| [lead.to_vec(), mid, trail.to_vec()].concat();
        // Spatial extent as a whole number of stride steps, covering every tap.
        let blocks: Vec<usize> =
            (0..k).map(|i| offsets.iter().map(|o| o[i] / stride[i] + out[i]).max().unwrap_or(out[i])).collect();
        let want: Vec<usize> = (0..k).map(|i| blocks[i] * stride[i]).collect();
        let cut = around((0..k).map(|i| shape[first + i].min(want[i])).collect());
        let x = self.slice(xp, &vec![0; shape.len()], &unit, cut.clone());
        let high = [vec![0; first], (0..k).map(|i| want[i] - cut[first + i]).collect(), vec![0; trail.len()]].concat();
        let x = self.pad(x, &vec![0; shape.len()], &high, &vec![0; shape.len()], fill);
        let x = self.reshape_to(x, around((0..k).flat_map(|i| [blocks[i], stride[i]]).collect()));
        windows(x)
    }

    /// The window at tap offsets `o` of `w`: `[lead..., out..., trail...]`.
    fn window(&mut self, w: &Windows, o: &[usize]) -> Value {
        let shape = self.t(w.x).shape;
        let (first, k) = (w.first, w.stride.len());
        let (lead, trail) = (&shape[..first], &shape[shape.len() - w.trail..]);
        let around = |mid: Vec<usize>| [lead.to_vec(), mid, trail.to_vec()].concat();
        let unit: Vec<usize> = vec![1; shape.len()];
        if w.stride.iter().all(|&s| s == 1) {
            let off = [vec![0; first], o.to_vec(), vec![0; w.trail]].concat();
            return self.slice(w.x, &off, &unit, around(w.out.clone()));
        }
        let off = [vec![0; first], (0..k).flat_map(|i| [o[i] / w.stride[i], o[i] % w.stride[i]]).collect(), vec![0; w.trail]].concat();
        let t = self.slice(w.x, &off, &unit, around((0..k).flat_map(|i| [w.out[i], 1]).collect()));
        self.reshape_to(t, around(w.out.clone()))
    }

    /// The windows of a convolution's input that its taps read, and each tap's offsets: the
    /// padded input is transposed first, to `[G, P..., N, Cg]` (the columns' order; T times
    /// smaller than the columns), so each tap is a window `[G, O..., N, Cg]` over the spatial
    /// dims and a mesh layout splitting the outer dims carries through.
    fn conv_windows(&mut self, cv: &Conv, x: Value) -> (Windows, Vec<Vec<usize>>) {
        let k = cv.size.len();
        let (g, cg, tt) = (cv.groups, cv.c / cv.groups, cv.taps());
        let zeros = vec![0; 2 + k];
        let pad_lo: Vec<usize> = [vec![0, 0], cv.padding.clone()].concat();
        let xp = self.pad(x, &pad_lo, &pad_lo, &zeros, 0.0);
        let xp = self.reshape_to(xp, [vec![cv.n, g, cg], cv.padded()].concat());
        // [N, G, Cg, P...] -> [G, P..., N, Cg]
        let perm: Vec<usize> = [vec![1], (3..3 + k).collect(), vec![0, 2]].concat();
        let xt = self.transpose(xp, &perm);
        let offsets: Vec<Vec<usize>> =
            (0..tt).map(|t| cv.tap(t).iter().zip(&cv.dilation).map(|(i, d)| i * d).collect()).collect();
        (self.windows(xt, 1, &offsets, &cv.stride, &cv.out, 0.0), offsets)
    }

    /// The columns `[G, M, Cg*T]` of a convolution's input (`[G, M, T*Cg]` if tap-major), M
    /// in `(O..., N)` order: the taps ([`Lx::conv_windows`]) join along a new dim next to `Cg`
    /// and one reshape merges `(O..., N)` and `(Cg, T)`, so only the finished columns move to
    /// the matmul.
    fn conv_columns(&mut self, cv: &Conv, x: Value) -> Value {
        self.conv_columns_as(cv, x, false)
    }

    /// The columns as `[G, M, Cg*T]`, or (`by_position`) `[G, O..., N, Cg*T]`.
    fn conv_columns_as(&mut self, cv: &Conv, x: Value, by_position: bool) -> Value {
        let k = cv.size.len();
        let (g, cg, tt) = (cv.groups, cv.c / cv.groups, cv.taps());
        let (windows, offsets) = self.conv_windows(cv, x);
        let taps: Vec<Value> = offsets.iter().map(|o| self.window(&windows, o)).collect(); // [G, O..., N, Cg]
        let lead = [vec![g], cv.out.clone(), vec![cv.n]].concat();
        let each = [lead.clone(), cv.k_order(cg, 1).to_vec()].concat();
        let taps: Vec<Value> = taps.into_iter().map(|t| self.reshape_to(t, each.clone())).collect();
        let cols = self.concat(taps, if cv.tap_major() { 2 + k } else { 3 + k }); // [G, O..., N, Cg, T]
        let rows = if by_position { lead } else { vec![g, cv.positions()] };
        self.reshape_to(cols, [rows, vec![cg * tt]].concat())
    }

    /// A convolution's forward tap by tap ([`Conv::per_tap`]): `[G, M, OCg]`, the sum over
    /// taps `t` of `tap_t @ W_t`, each product after the first adding the sum so far in its
    /// matmul's epilogue. Every tap is cut and reshaped (moved to the matmul's layout) before
    /// the first matmul, so the movement overlaps the matmuls (resnet18 at 8 x 224 x 224 on
    /// `d1`: 3.34 ms; 3.45 ms with each tap cut two taps ahead of its matmul, 3.47 ms one
    /// ahead); each window dies at its reshape (all windows first, on the input's few cores,
    /// overflowed a tile's core for resnet50's layer 1 at batch 8).
    fn conv_per_tap(&mut self, cv: &Conv, x: Value, w: Value) -> Result<Value, String> {
        let (g, cg, ocg, tt) = (cv.groups, cv.c / cv.groups, cv.oc / cv.groups, cv.taps());
        let w = self.reshape_to(w, vec![g, ocg, cg, tt]);
        let w = self.transpose(w, &[0, 3, 2, 1]); // [G, T, Cg, OCg]
        let (windows, offsets) = self.conv_windows(cv, x);
        let mut taps = Vec::with_capacity(tt);
        for o in &offsets {
            let tap = self.window(&windows, o);
            taps.push(self.reshape_to(tap, vec![g, cv.positions(), cg]));
        }
        let mut acc: Option<Value> = None;
        for (t, tap) in taps.into_iter().enumerate() {
            let wt = self.slice_dim(w, 1, t, 1, 1);
            let wt = self.reshape_to(wt, vec![g, cg, ocg]);
            acc = Some(match acc {
                None => self.matmul(tap, wt),
                Some(acc) => {
                    let ty = self.t(acc);
                    self.emit("matmul", vec![tap, wt, acc], vec![attr("epilogue", Attr::Str("add(x0,x1)".into()))], ty)
                }
            });
        }
        acc.ok_or_else(|| "a convolution without kernel taps".to_string())
    }

    /// The weight `[OC, Cg, K...]` as `[G, OCg, Cg*T]` (`[G, OCg, T*Cg]` if tap-major).
    fn conv_weight(&mut self, cv: &Conv, w: Value) -> Value {
        let (g, cg, ocg, tt) = (cv.groups, cv.c / cv.groups, cv.oc / cv.groups, cv.taps());
        if !cv.tap_major() {
            return self.reshape_to(w, vec![g, ocg, cg * tt]);
        }
        let w = self.reshape_to(w, vec![g, ocg, cg, tt]);
        let w = self.transpose(w, &[0, 1, 3, 2]);
        self.reshape_to(w, vec![g, ocg, tt * cg])
    }

    /// `[N, OC, O...]` (a conv output or its gradient) as `[G, M, OC/G]`.
    fn conv_rows(&mut self, cv: &Conv, y: Value) -> Value {
        let k = cv.size.len();
        let (g, ocg) = (cv.groups, cv.oc / cv.groups);
        let y = self.reshape_to(y, [vec![cv.n, g, ocg], cv.out.clone()].concat());
        let perm: Vec<usize> = [vec![1], (3..3 + k).collect(), vec![0, 2]].concat();
        let y = self.transpose(y, &perm);
        self.reshape_to(y, vec![g, cv.positions(), ocg])
    }

    /// A one-group weight `[OC, C, K...]` as `[C, OC, K...]` with each kernel dim reversed:
    /// the weight of the convolution that is its input gradient ([`Conv::input_grad_conv`]).
    fn flipped_weight(&mut self, cv: &Conv, w: Value) -> Value {
        let k = cv.kernel.len();
        let perm: Vec<usize> = [vec![1, 0], (2..2 + k).collect()].concat();
        let mut w = self.transpose(w, &perm);
        for (i, &n) in cv.kernel.iter().enumerate() {
            if n > 1 {
                let parts: Vec<Value> = (0..n).rev().map(|j| self.slice_dim(w, 2 + i, j, 1, 1)).collect();
                w = self.concat(parts, 2 + i);
            }
        }
        w
    }

    /// A convolution's forward without its bias: `x` `[N, C, S...]` and `w` `[OC, Cg, K...]`
    /// to `out` `[N, OC, O...]`.
    fn conv_forward(&mut self, cv: &Conv, x: Value, w: Value, out: &TensorType) -> Result<Value, String> {
        let k = cv.size.len();
        let (g, ocg) = (cv.groups, cv.oc / cv.groups);
        let y = if cv.per_tap() {
            self.conv_per_tap(cv, x, w)?
        } else {
            let flat = cv.flat();
            let cols = self.conv_columns_as(cv, x, flat);
            let wm = self.conv_weight(cv, w);
            let wm = self.transpose(wm, &[0, 2, 1]);
            let wm = if flat { self.reshape_to(wm, vec![cv.c * cv.taps(), ocg]) } else { wm };
            self.matmul(cols, wm)
        }; // [G, M, OCg] or [1, O..., N, OC]
        let y = self.reshape_to(y, [vec![g], cv.out.clone(), vec![cv.n, ocg]].concat());
        // [G, O..., N, OCg] -> [N, G, OCg, O...]
        let perm: Vec<usize> = [vec![1 + k, 0, 2 + k], (1..1 + k).collect()].concat();
        let y = self.transpose(y, &perm);
        Ok(self.reshape_to(y, out.shape.clone()))
    }

    /// aten.convolution(input, weight, bias?, stride, padding, dilation, transposed,
    /// output_padding, groups).
    pub(super) fn convolution(&mut self, op: &Op, ins: &[Value], out: &TensorType) -> LResult {
        need(ins, 2)?;
        let (x, w) = (ins[0], ins[1]);
        let cv = Conv::from_op(op, &self.t(x), &self.t(w))?;
        if out.shape != [vec![cv.n, cv.oc], cv.out.clone()].concat() {
            return Err(format!("output shape {:?} does not match the convolution's", out.shape));
        }
        let k = cv.size.len();
        let mut y = self.conv_forward(&cv, x, w, out)?;
        if let Some(&b) = ins.get(2) {
            let b = self.reshape_to(b, [vec![cv.oc], vec![1; k]].concat());
            y = self.binary("add", y, b, out.elem)?;
        }
        Ok(vec![y])
    }

    /// aten.convolution_backward(grad_output, input, weight, bias_sizes, stride, padding,
    /// dilation, transposed, output_padding, groups, output_mask) -> the present results of
    /// (grad_input, grad_weight, grad_bias).
    pub(super) fn convolution_backward(&mut self, op: &Op, ins: &[Value], results: &[TensorType]) -> LResult {
        need(ins, 3)?;
        let (gy, x, w) = (ins[0], ins[1], ins[2]);
        let cv = Conv::from_op(op, &self.t(x), &self.t(w))?;
        let mask: Vec<bool> = match op.attr("output_mask") {
            Some(Attr::Array(v)) => v.iter().map(|b| b.as_bool().unwrap_or(true)).collect(),
            _ => return Err("missing attribute 'output_mask'".into()),
        };
        if mask.len() != 3 || mask.iter().filter(|&&m| m).count() != results.len() {
            return Err(format!("output_mask {mask:?} does not match {} result(s)", results.len()));
        }
        let k = cv.size.len();
        let (g, cg, ocg, tt) = (cv.groups, cv.c / cv.groups, cv.oc / cv.groups, cv.taps());
        let rows = self.conv_rows(&cv, gy); // [G, M, OCg]
        let mut out = Vec::new();
        if let Some(dcv) = cv.input_grad_conv().filter(|_| mask[0] && self.gather_input_grads) {
            let wf = self.flipped_weight(&cv, w);
            out.push(self.conv_forward(&dcv, gy, wf, &results[0])?);
        } else if mask[0] {
            // Each tap's gradient, cut from the product in its `[G, O..., N, Cg]` order, placed
            // back into the padded input's `[G, P..., N, Cg]` and summed there; one transpose
            // of the (T times smaller) sum at the end. The same sums in the same order as
            // placing them in `[N, C, P...]`: the same bits.
            let wm = self.conv_weight(&cv, w);
            let dcols = self.matmul(rows, wm); // [G, M, Cg*T] (or T*Cg)
            let dcols = self.reshape_to(dcols, [vec![g], cv.out.clone(), vec![cv.n], cv.k_order(cg, tt).to_vec()].concat());
            let tap_dim = cv.k_order(3 + k, 2 + k)[0];
            let padded = cv.padded();
            let mut acc: Option<Value> = None;
            for t in 0..tt {
                let idx = cv.tap(t);
                let tap = self.slice_dim(dcols, tap_dim, t, 1, 1);
                let tap = self.reshape_to(tap, [vec![g], cv.out.clone(), vec![cv.n, cg]].concat());
                let low: Vec<usize> = [vec![0], (0..k).map(|i| idx[i] * cv.dilation[i]).collect(), vec![0, 0]].concat();
                let high: Vec<usize> = [
                    vec![0],
                    (0..k).map(|i| padded[i] - (idx[i] * cv.dilation[i] + (cv.out[i] - 1) * cv.stride[i] + 1)).collect(),
                    vec![0, 0],
                ]
                .concat();
                let interior: Vec<usize> = [vec![0], cv.stride.iter().map(|s| s - 1).collect(), vec![0, 0]].concat();
                let placed = self.pad(tap, &low, &high, &interior, 0.0);
                acc = Some(match acc {
                    None => placed,
                    Some(a) => self.binary("add", a, placed, results[0].elem)?,
                });
            }
            let acc = acc.ok_or("a convolution without kernel taps")?;
            // [G, P..., N, Cg] -> [N, G, Cg, P...]
            let perm: Vec<usize> = [vec![1 + k, 0, 2 + k], (1..1 + k).collect()].concat();
            let acc = self.transpose(acc, &perm);
            let acc = self.reshape_to(acc, [vec![cv.n, cv.c], padded].concat());
            let offsets: Vec<usize> = [vec![0, 0], cv.padding.clone()].concat();
            out.push(self.slice(acc, &offsets, &vec![1; 2 + k], [vec![cv.n, cv.c], cv.size.clone()].concat()));
        }
        if mask[1] {
            // rows^T @ cols: the transpose moves the gradient rather than T times larger
            // columns, and the product comes out in the weight's order.
            // Its contraction (M, every output position) is long and its result small, so it
            // is split into S slabs of at least WGRAD_SLAB_ROWS positions: one batched matmul
            // of S partial gradients (spread over the mesh by their batch, each slab
            // contracted where it lies) summed by a reduction, instead of one matmul stepping
            // the whole contraction through the few cores of its result. The slabs' sums are
            // rounded before they are added: not the bits of one long sum.
            let cols = self.conv_columns(&cv, x); // [G, M, Cg*T]
            let m = self.t(cols).shape[1];
            let ct = cg * tt;
            // Not for groups: lowering cannot reshape [G, M, X] to [G*S, M/S, X] in place (G
            // and M are split over different mesh axes), and the layout it moved the columns
            // to held all of M on each core (a grouped 64-channel 128 x 128 one overflowed).
            let s = if g == 1 { (1..=m / WGRAD_SLAB_ROWS).rev().find(|s| m % s == 0).unwrap_or(1) } else { 1 };
            let (rows, cols) = if s > 1 {
                (self.reshape_to(rows, vec![s, m / s, ocg]), self.reshape_to(cols, vec![s, m / s, ct]))
            } else {
                (rows, cols)
            };
            let rows_t = self.transpose(rows, &[0, 2, 1]);
            let mut gw = self.matmul(rows_t, cols); // [S or G, OCg, Cg*T] (or T*Cg)
            if s > 1 {
                let elem = self.t(gw).elem;
                gw = self.reduce("reduce_sum", gw, &[0], true, &TensorType::new(vec![1, ocg, ct], elem))?;
            }
            if cv.tap_major() {
                gw = self.reshape_to(gw, vec![g, ocg, tt, cg]);
                gw = self.transpose(gw, &[0, 1, 3, 2]);
            }
            out.push(self.reshape_to(gw, [vec![cv.oc, cg], cv.kernel.clone()].concat()));
        }
        if mask[2] {
            let dims: Vec<i64> = [vec![0], (2..2 + k as i64).collect()].concat();
            let elem = self.t(gy).elem;
            out.push(self.reduce("reduce_sum", gy, &dims, false, &TensorType::new(vec![cv.oc], elem))?);
        }
        Ok(out)
    }

    /// aten._native_batch_norm_legit_no_training(x, weight, bias, running_mean, running_var,
    /// momentum, eps) -> (y, empty, empty): y = (x - mean) * rsqrt(var + eps) * w + b per channel.
    pub(super) fn batch_norm_inference(&mut self, op: &Op, ins: &[Value], out: &TensorType, results: usize) -> LResult {
        if ins.len() != 5 {
            return Err("batch norm without weight or bias is not supported yet".into());
        }
        let (x, w, b, mean, var) = (ins[0], ins[1], ins[2], ins[3], ins[4]);
        let eps = op.attr("eps").and_then(Attr::as_float).ok_or("missing attribute 'eps'")?;
        let r = self.t(x).rank();
        let c = self.t(x).shape.get(1).copied().ok_or("batch norm needs a channel dim")?;
        let e = out.elem;
        let per_channel = [vec![c], vec![1; r.saturating_sub(2)]].concat();
        let [w, b, mean, var] = [w, b, mean, var].map(|v| self.reshape_to(v, per_channel.clone()));
        let eps = self.constant(eps, e);
        let ve = self.binary("add", var, eps, e)?;
        let inv = self.unary("rsqrt", ve);
        let centered = self.binary("sub", x, mean, e)?;
        let normed = self.binary("mul", centered, inv, e)?;
        let scaled = self.binary("mul", normed, w, e)?;
        let y = self.binary("add", scaled, b, e)?;
        let mut outs = vec![y];
        // The saved statistics are empty in inference; nothing reads them.
        for _ in 1..results {
            let empty = TensorType::new(vec![0], ElemType::F32);
            outs.push(self.emit("constant", vec![], vec![attr("value", Attr::Float(0.0))], empty));
        }
        Ok(outs)
    }

    /// `iota` along `dim` of `shape` in `elem`.
    fn iota(&mut self, shape: Vec<usize>, dim: usize, elem: ElemType) -> Value {
        self.emit("iota", vec![], vec![attr("dim", Attr::Int(dim as i64))], TensorType::new(shape, elem))
    }

    /// aten.arange (default / start / start_step): `start + i*step`, for integral start and
    /// step (then every value is exact).
    pub(super) fn arange(&mut self, op: &Op, out: &TensorType) -> LResult {
        let num = |n: &str, d: f64| op.attr(n).and_then(Attr::as_float).unwrap_or(d);
        let (start, end, step) = (num("start", 0.0), num("end", 0.0), num("step", 1.0));
        if [start, end, step].iter().any(|v| v.fract() != 0.0 || v.abs() >= (1u64 << 24) as f64) || out.rank() != 1 {
            return Err("arange is supported with integer start, end and step below 2^24".into());
        }
        let mut v = self.iota(out.shape.clone(), 0, out.elem);
        if step != 1.0 {
            let c = self.constant(step, out.elem);
            v = self.binary("mul", v, c, out.elem)?;
        }
        if start != 0.0 {
            let c = self.constant(start, out.elem);
            v = self.binary("add", v, c, out.elem)?;
        }
        Ok(vec![v])
    }

    /// aten.max_pool2d_with_indices(x, kernel_size, stride, padding, dilation, ceil_mode) ->
    /// (values, indices): the maximum over the window taps, and the flat `h*W + w` index of
    /// the first maximum in window order (the last NaN if the window has NaNs), as PyTorch's
    /// CPU kernel picks it.
    pub(super) fn max_pool(&mut self, op: &Op, x: Value, results: &[TensorType]) -> LResult {
        let pool = Pool::from_op(op, &self.t(x), &results[0])?;
        let e = results[0].elem;
        let xp = self.pad(x, &pool.low(), &pool.high(), &[0; 4], f64::NEG_INFINITY);
        let taps = pool.taps_of(self, xp, f64::NEG_INFINITY);
        // A balanced tree of maximums (exact, so any order gives the same values): depth 4
        // for 3 x 3 windows instead of a chain of 8, which `egraph-optimize` moves layout ops
        // through one level per iteration.
        let mut level = taps.clone();
        while level.len() > 1 {
            let mut next = Vec::with_capacity(level.len().div_ceil(2));
            for pair in level.chunks(2) {
                next.push(if let [a, b] = pair { self.binary("maximum", *a, *b, e)? } else { pair[0] });
            }
            level = next;
        }
        let out = level[0];
        if results.len() == 1 {
            return Ok(vec![out]);
        }
        let i64t = ElemType::I64;
        // Which taps are inside the input (not padding), and their flat input positions.
        let truth = self.constant(1.0, ElemType::I1);
        let ones = self.emit("broadcast", vec![truth], vec![], TensorType::new(vec![1, 1, pool.size[0], pool.size[1]], ElemType::I1));
        let validp = self.pad(ones, &pool.low(), &pool.high(), &[0; 4], 0.0);
        let (mut first, mut last_nan) = (self.constant(0.0, i64t), self.constant(0.0, i64t));
        let mut conds = Vec::new();
        let valids = pool.taps_of(self, validp, 0.0);
        for (t, &tap) in taps.iter().enumerate() {
            let valid = valids[t];
            let pos = pool.positions(self, t)?;
            let eq = self.compare("eq", tap, out)?;
            let f = self.constant(0.0, ElemType::I1);
            let hit = self.select(valid, eq, f, ElemType::I1)?;
            let nan = self.compare("ne", tap, tap)?;
            last_nan = self.select(nan, pos, last_nan, i64t)?;
            conds.push((hit, pos));
        }
        for (hit, pos) in conds.into_iter().rev() {
            first = self.select(hit, pos, first, i64t)?;
        }
        let is_nan = self.compare("ne", out, out)?;
        let idx = self.select(is_nan, last_nan, first, i64t)?;
        let idx = self.reshape(idx, &results[1]);
        Ok(vec![out, idx])
    }

    /// aten.max_pool2d_with_indices_backward(grad, x, kernel_size, stride, padding, dilation,
    /// ceil_mode, indices): each tap sends the gradient of the outputs whose index is its
    /// position back to that position.
    pub(super) fn max_pool_backward(&mut self, op: &Op, ins: &[Value], out: &TensorType) -> LResult {
        need(ins, 3)?;
        let (g, x, indices) = (ins[0], ins[1], ins[2]);
        let pool = Pool::from_op(op, &self.t(x), &self.t(g))?;
        let e = out.elem;
        let zero = self.constant(0.0, e);
        let mut acc: Option<Value> = None;
        for t in 0..pool.taps() {
            let pos = pool.positions(self, t)?;
            let m = self.compare("eq", indices, pos)?;
            let part = self.select(m, g, zero, e)?;
            let (kh, kw) = pool.tap(t);
            let low = [0, 0, kh * pool.dilation[0], kw * pool.dilation[1]];
            let padded = pool.padded();
            let high = [
                0,
                0,
                padded[0] - (low[2] + (pool.out[0] - 1) * pool.stride[0] + 1),
                padded[1] - (low[3] + (pool.out[1] - 1) * pool.stride[1] + 1),
            ];
            let interior = [0, 0, pool.stride[0] - 1, pool.stride[1] - 1];
            let placed = self.pad(part, &low, &high, &interior, 0.0);
            acc = Some(match acc {
                None => placed,
                Some(a) => self.binary("add", a, placed, e)?,
            });
        }
        let acc = acc.ok_or("a pooling window without taps")?;
        let n = self.t(x).shape;
        let gx = self.slice(acc, &[0, 0, pool.padding[0], pool.padding[1]], &[1; 4], n);
        Ok(vec![gx])
    }

    /// aten.embedding(weight, indices, ...): rows of the table.
    pub(super) fn embedding(&mut self, table: Value, ids: Value, out: &TensorType) -> LResult {
        if self.t(table).rank() != 2 || self.t(ids).elem != ElemType::I64 {
            return Err("embedding needs a 2-D table and int64 indices".into());
        }
        Ok(vec![self.emit("embedding", vec![table, ids], vec![], out.clone())])
    }

    /// aten.embedding_dense_backward(grad, indices, num_weights, padding_idx, scale_grad_by_freq).
    pub(super) fn embedding_backward(&mut self, op: &Op, g: Value, ids: Value, out: &TensorType) -> LResult {
        if op.attr("scale_grad_by_freq").and_then(Attr::as_bool).unwrap_or(false) {
            return Err("scale_grad_by_freq is not supported yet".into());
        }
        let mut attrs = vec![];
        if let Some(p) = op.attr("padding_idx").and_then(Attr::as_int).filter(|&p| p >= 0) {
            attrs.push(attr("padding_idx", Attr::Int(p)));
        }
        if out.rank() != 2 {
            return Err("the embedding gradient must be [num_weights, D]".into());
        }
        let d = out.shape[1];
        let g = self.reshape_to(g, [self.t(ids).shape, vec![d]].concat());
        Ok(vec![self.emit("embedding_grad", vec![g, ids], attrs, out.clone())])
    }

    /// The flat row index into `self` viewed as `[prod(first k dims), rest]` for advanced
    /// indexing by `k` int64 tensors on the leading dims (negative indices wrap), and that view.
    fn flat_rows(&mut self, op: &Op, x: Value, idx: &[Value]) -> Result<(Value, Vec<usize>), String> {
        if op.attr("indices_none_at").is_some() {
            return Err("indexing with None (a slice) between index tensors is not supported yet".into());
        }
        let shape = self.t(x).shape;
        let k = idx.len();
        if k == 0 || k > shape.len() || idx.iter().any(|&i| !matches!(self.t(i).elem, ElemType::I64 | ElemType::I32)) {
            return Err("advanced indexing is supported with int64 index tensors on the leading dims".into());
        }
        // Index tensors broadcast together (PyTorch's advanced indexing).
        let shapes: Vec<Vec<usize>> = idx.iter().map(|&i| self.t(i).shape).collect();
        let refs: Vec<&[usize]> = shapes.iter().map(Vec::as_slice).collect();
        let ishape = dojo_compiler::dialect::broadcast_shapes(&refs)?;
        let idx: Vec<Value> = idx
            .iter()
            .map(|&i| {
                if self.t(i).shape == ishape {
                    i
                } else {
                    let ty = self.ty(ishape.clone(), i);
                    self.emit("broadcast", vec![i], vec![], ty)
                }
            })
            .collect();
        let i64t = ElemType::I64;
        let mut flat: Option<Value> = None;
        let mut valid: Option<Value> = None;
        for (d, &i) in idx.iter().enumerate() {
            let i = self.convert(i, i64t);
            let size = self.constant(shape[d] as f64, i64t);
            let zero = self.constant(0.0, i64t);
            let neg = self.compare("lt", i, zero)?;
            let wrapped = self.binary("add", i, size, i64t)?;
            let i = self.select(neg, wrapped, i, i64t)?;
            valid = Some(self.in_range(i, shape[d], valid)?);
            flat = Some(match flat {
                None => i,
                Some(f) => {
                    let f = self.binary("mul", f, size, i64t)?;
                    self.binary("add", f, i, i64t)?
                }
            });
        }
        let rows: usize = shape[..k].iter().product();
        let rest: usize = shape[k..].iter().product();
        let flat = self.invalid_to_minus_one(flat.ok_or("no index tensors")?, valid)?;
        Ok((flat, vec![rows, rest]))
    }

    /// `i` in `0..size`, and `acc` if given.
    fn in_range(&mut self, i: Value, size: usize, acc: Option<Value>) -> Result<Value, String> {
        let i64t = ElemType::I64;
        let (zero, n) = (self.constant(0.0, i64t), self.constant(size as f64, i64t));
        let lo = self.compare("ge", i, zero)?;
        let hi = self.compare("lt", i, n)?;
        let f = self.constant(0.0, ElemType::I1);
        let ok = self.select(lo, hi, f, ElemType::I1)?;
        match acc {
            None => Ok(ok),
            Some(a) => self.select(a, ok, f, ElemType::I1),
        }
    }

    /// Flat row ids with -1 where a coordinate was out of range: the mesh's embedding kernels
    /// reject it at run time (PyTorch raises an IndexError), so a bad index can never read or
    /// write another row.
    fn invalid_to_minus_one(&mut self, flat: Value, valid: Option<Value>) -> Result<Value, String> {
        match valid {
            None => Ok(flat),
            Some(v) => {
                let bad = self.constant(-1.0, ElemType::I64);
                self.select(v, flat, bad, ElemType::I64)
            }
        }
    }

    /// aten.index.Tensor(self, indices): int64 index tensors on the leading dims.
    pub(super) fn index(&mut self, op: &Op, ins: &[Value], out: &TensorType) -> LResult {
        need(ins, 2)?;
        let (flat, table_shape) = self.flat_rows(op, ins[0], &ins[1..])?;
        let table = self.reshape_to(ins[0], table_shape.clone());
        let ids_shape = self.t(flat).shape;
        let ty = TensorType::new([ids_shape, vec![table_shape[1]]].concat(), out.elem);
        let rows = self.emit("embedding", vec![table, flat], vec![], ty);
        Ok(vec![self.reshape(rows, out)])
    }

    /// aten.index_put(self, indices, values, accumulate=True): `self` plus the values summed
    /// into the indexed rows (the backward of advanced indexing).
    pub(super) fn index_put(&mut self, op: &Op, ins: &[Value], out: &TensorType) -> LResult {
        need(ins, 3)?;
        if !op.attr("accumulate").and_then(Attr::as_bool).unwrap_or(false) {
            return Err("index_put without accumulate (an overwrite) is not supported yet".into());
        }
        let (x, values) = (ins[0], ins[ins.len() - 1]);
        let (flat, table_shape) = self.flat_rows(op, x, &ins[1..ins.len() - 1])?;
        let ids_shape = self.t(flat).shape;
        let vshape = [ids_shape.clone(), out.shape[out.rank() - (out.rank() - (ins.len() - 2))..].to_vec()].concat();
        let vt = TensorType::new(vshape, out.elem);
        let v = if self.t(values).shape == vt.shape { values } else { self.emit("broadcast", vec![values], vec![], vt) };
        let v = self.reshape_to(v, [ids_shape, vec![table_shape[1]]].concat());
        let summed = self.emit("embedding_grad", vec![v, flat], vec![], TensorType::new(table_shape, out.elem));
        let summed = self.reshape(summed, out);
        Ok(vec![self.binary("add", x, summed, out.elem)?])
    }

    /// aten.gather(self, dim, index): `out[p] = self[p with dim replaced by index[p]]`, as rows
    /// of `self` flattened to one column, picked by flat positions.
    pub(super) fn gather(&mut self, op: &Op, x: Value, index: Value, out: &TensorType) -> LResult {
        let (xs, is) = (self.t(x).shape, self.t(index).shape);
        let flat = self.scatter_positions(op, &xs, index)?;
        let table = self.reshape_to(x, vec![xs.iter().product(), 1]);
        let ty = TensorType::new([is, vec![1]].concat(), out.elem);
        let rows = self.emit("embedding", vec![table, flat], vec![], ty);
        Ok(vec![self.reshape(rows, out)])
    }

    /// aten.scatter_add(self, dim, index, src): `self` plus `src` summed into the positions
    /// gather would read (the backward of gather).
    pub(super) fn scatter_add(&mut self, op: &Op, ins: &[Value], out: &TensorType) -> LResult {
        need(ins, 3)?;
        let (x, index, src) = (ins[0], ins[1], ins[2]);
        let (xs, is) = (self.t(x).shape, self.t(index).shape);
        if self.t(src).shape != is {
            return Err("scatter_add with src larger than index is not supported yet".into());
        }
        let flat = self.scatter_positions(op, &xs, index)?;
        let src = self.reshape_to(src, [is, vec![1]].concat());
        let n: usize = xs.iter().product();
        let summed = self.emit("embedding_grad", vec![src, flat], vec![], TensorType::new(vec![n, 1], out.elem));
        let summed = self.reshape(summed, out);
        Ok(vec![self.binary("add", x, summed, out.elem)?])
    }

    /// Flat positions in a tensor of shape `xs` of gather/scatter along attribute `dim` by
    /// `index` (-1 where an index is out of range).
    fn scatter_positions(&mut self, op: &Op, xs: &[usize], index: Value) -> Result<Value, String> {
        let is = self.t(index).shape;
        let dim = self.dim_attr(op, "dim", xs.len())?;
        if xs.len() != is.len() || (0..xs.len()).any(|d| d != dim && is[d] > xs[d]) || is.is_empty() {
            return Err("the index must have self's rank and no larger dims".into());
        }
        let i64t = ElemType::I64;
        let mut stride = 1usize;
        let mut flat: Option<Value> = None;
        let mut valid: Option<Value> = None;
        for d in (0..xs.len()).rev() {
            let coord = if d == dim {
                // No wrapping: gather rejects negative indices, as in PyTorch.
                let i = self.convert(index, i64t);
                valid = Some(self.in_range(i, xs[d], None)?);
                i
            } else {
                let mut shape = vec![1; is.len()];
                shape[d] = is[d];
                self.iota(shape, d, i64t)
            };
            let c = if stride == 1 {
                coord
            } else {
                let s = self.constant(stride as f64, i64t);
                self.binary("mul", coord, s, i64t)?
            };
            flat = Some(match flat {
                None => c,
                Some(f) => self.binary("add", f, c, i64t)?,
            });
            stride *= xs[d];
        }
        let flat = flat.ok_or("gather of a scalar")?;
        let flat = self.invalid_to_minus_one(flat, valid)?;
        Ok(if self.t(flat).shape == is {
            flat
        } else {
            let ty = self.ty(is.clone(), flat);
            self.emit("broadcast", vec![flat], vec![], ty)
        })
    }

    /// aten.argmax(x, dim?, keepdim): the first index of the maximum (of the first NaN).
    pub(super) fn argmax(&mut self, op: &Op, x: Value, out: &TensorType) -> LResult {
        let t = self.t(x);
        let (x, dim) = match op.attr("dim").and_then(Attr::as_int) {
            Some(_) if t.rank() > 0 => (x, self.dim_attr(op, "dim", t.rank())?),
            _ => (self.reshape_to(x, vec![t.numel()]), 0),
        };
        let shape = self.t(x).shape;
        let e = if is_float(self.t(x).elem) { self.t(x).elem } else { ElemType::F32 };
        let x = self.convert(x, e);
        let mut kept = shape.clone();
        kept[dim] = 1;
        let m = self.reduce("reduce_max", x, &[dim as i64], true, &TensorType::new(kept.clone(), e))?;
        let eq = self.compare("eq", x, m)?;
        let nan = self.compare("ne", x, x)?;
        let hit = self.select(eq, eq, nan, ElemType::I1)?;
        let i64t = ElemType::I64;
        let mut ishape = vec![1; shape.len()];
        ishape[dim] = shape[dim];
        let iota = self.iota(ishape, dim, i64t);
        let neg = self.unary("neg", iota);
        let far = self.constant(-(shape[dim] as f64), i64t);
        let cand = self.select(hit, neg, far, i64t)?;
        let best = self.reduce("reduce_max", cand, &[dim as i64], true, &TensorType::new(kept, i64t))?;
        let idx = self.unary("neg", best);
        let idx = self.convert(idx, out.elem);
        Ok(vec![self.reshape(idx, out)])
    }

    /// aten.cumsum(x, dim) of integers or bools: `x @ U` with `U` the upper-triangular ones, an
    /// exact sum in index order (floats are not accepted: `0 * inf` would give NaN).
    pub(super) fn cumsum(&mut self, op: &Op, x: Value, out: &TensorType) -> LResult {
        let t = self.t(x);
        if is_float(t.elem) {
            return Err("cumsum is supported on integer and bool tensors".into());
        }
        let dim = self.dim_attr(op, "dim", t.rank())?;
        let e = out.elem;
        let x = self.convert(x, e);
        let r = t.rank().max(1);
        let x = if t.rank() == 0 { self.reshape_to(x, vec![1]) } else { x };
        let mut perm: Vec<usize> = (0..r).filter(|&d| d != dim).collect();
        perm.push(dim);
        let moved = self.transpose(x, &perm);
        let n = t.shape.get(dim).copied().unwrap_or(1);
        let ms = self.t(moved).shape;
        let lead: usize = ms[..r - 1].iter().product();
        let flat = self.reshape_to(moved, vec![lead, n]);
        let rows = self.iota(vec![n, 1], 0, e);
        let cols = self.iota(vec![1, n], 1, e);
        let upper = self.compare("le", rows, cols)?;
        let upper = self.convert(upper, e);
        let sums = self.emit("matmul", vec![flat, upper], vec![], TensorType::new(vec![lead, n], e));
        let sums = self.reshape_to(sums, ms);
        let mut back = vec![0; r];
        for (i, &p) in perm.iter().enumerate() {
            back[p] = i;
        }
        let y = self.transpose(sums, &back);
        Ok(vec![self.reshape(y, out)])
    }

    fn dim_attr(&self, op: &Op, name: &str, rank: usize) -> Result<usize, String> {
        let d = op.attr(name).and_then(Attr::as_int).unwrap_or(0);
        let r = rank.max(1) as i64;
        let n = if d < 0 { d + r } else { d };
        if !(0..r).contains(&n) {
            return Err(format!("{name} {d} is out of range for rank {rank}"));
        }
        Ok(n as usize)
    }

    fn index_attr(&self, op: &Op, name: &str, size: usize) -> Result<usize, String> {
        let i = op.attr(name).and_then(Attr::as_int).ok_or(format!("missing attribute '{name}'"))?;
        let n = if i < 0 { i + size as i64 } else { i };
        if !(0..size as i64).contains(&n) {
            return Err(format!("{name} {i} is out of range for size {size}"));
        }
        Ok(n as usize)
    }
}
