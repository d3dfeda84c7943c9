//! Legalization of the shape-moving and neural-network op families: slicing, padding,
//! concatenation, splits, convolution (forward and backward, grouped and depthwise, any
//! stride/padding/dilation, 1-3 spatial dims) and inference batch norm.
//!
//! Convolution is lowered the im2col way, all in `dojo` ops the mesh already runs: every
//! kernel tap is a strided `slice` of the padded input, the taps are joined into columns
//! `[G, M, Cg*T]` (`M` = output positions x batch, outermost output dim first so that it can
//! stay split over the mesh), and one batched `matmul` per conv multiplies them by the weights
//! `[G, Cg*T, OC/G]`. The backward pass is the transpose of the same linear maps: weight
//! gradients are `cols^T @ grad`, input gradients are `grad @ W` scattered back tap by tap
//! with `pad` (interior padding undoes the stride) and summed.

use super::{Lx, LResult};
use dojo_compiler::{attr, Attr, ElemType, Op, TensorType, Value};

/// A torch-style (start, end) on a dim of `size`: negatives wrap, then clamp to 0..=size.
fn clamp_range(start: i64, end: i64, size: usize) -> (usize, usize) {
    let n = size as i64;
    let fix = |v: i64| if v < 0 { (v + n).clamp(0, n) } else { v.min(n) };
    let (s, e) = (fix(start), fix(end));
    (s as usize, e.max(s) as usize)
}

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

    fn padded(&self) -> Vec<usize> {
        (0..self.size.len()).map(|i| self.size[i] + 2 * self.padding[i]).collect()
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

    /// aten.slice.Tensor(x, dim, start, end, step).
    pub(super) fn slice_tensor(&mut self, op: &Op, x: Value, out: &TensorType) -> LResult {
        let t = self.t(x);
        let dim = self.dim_attr(op, "dim", t.rank())?;
        let start = op.attr("start").and_then(Attr::as_int).unwrap_or(0);
        let end = op.attr("end").and_then(Attr::as_int).unwrap_or(i64::MAX);
        let step = op.attr("step").and_then(Attr::as_int).unwrap_or(1);
        if step < 1 {
            return Err(format!("slice step {step} must be positive"));
        }
        let (s, _) = clamp_range(start, end, t.shape[dim]);
        Ok(vec![self.slice_dim(x, dim, s, out.shape[dim], step as usize)])
    }

    /// aten.slice_backward(grad, input_sizes, dim, start, end, step): grad placed in zeros.
    pub(super) fn slice_backward(&mut self, op: &Op, g: Value, out: &TensorType) -> LResult {
        let dim = self.dim_attr(op, "dim", out.rank())?;
        let start = op.attr("start").and_then(Attr::as_int).ok_or("missing attribute 'start'")?;
        let end = op.attr("end").and_then(Attr::as_int).ok_or("missing attribute 'end'")?;
        let step = op.attr("step").and_then(Attr::as_int).unwrap_or(1).max(1) as usize;
        let (s, _) = clamp_range(start, end, out.shape[dim]);
        Ok(vec![self.place_along(g, dim, s, step, out)])
    }

    /// `g` (a strided window of a tensor of type `out` along `dim`) placed in zeros.
    fn place_along(&mut self, g: Value, dim: usize, start: usize, step: usize, out: &TensorType) -> Value {
        let r = out.rank();
        let n = self.t(g).shape[dim];
        let (mut low, mut high, mut interior) = (vec![0; r], vec![0; r], vec![0; r]);
        low[dim] = start;
        interior[dim] = step - 1;
        high[dim] = out.shape[dim] - (start + (n - 1) * step + 1);
        self.pad(g, &low, &high, &interior, 0.0)
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
        Ok(vec![self.place_along(g, dim, index, 1, out)])
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

    /// The columns `[G, M, Cg*T]` of a convolution's input.
    fn conv_columns(&mut self, cv: &Conv, x: Value) -> Value {
        let k = cv.size.len();
        let p = cv.padding.clone();
        let zeros = vec![0; 2 + k];
        let pad_lo: Vec<usize> = [vec![0, 0], p].concat();
        let xp = self.pad(x, &pad_lo, &pad_lo, &zeros, 0.0);
        let mut taps = Vec::with_capacity(cv.taps());
        for t in 0..cv.taps() {
            let idx = cv.tap(t);
            let offsets: Vec<usize> = [vec![0, 0], (0..k).map(|i| idx[i] * cv.dilation[i]).collect()].concat();
            let strides: Vec<usize> = [vec![1, 1], cv.stride.clone()].concat();
            let s = self.slice(xp, &offsets, &strides, [vec![cv.n, cv.c], cv.out.clone()].concat());
            taps.push(self.reshape_to(s, [vec![cv.n, cv.c, 1], cv.out.clone()].concat()));
        }
        let cols = self.concat(taps, 2); // [N, C, T, O...]
        let (g, cg, tt) = (cv.groups, cv.c / cv.groups, cv.taps());
        let cols = self.reshape_to(cols, [vec![cv.n, g, cg, tt], cv.out.clone()].concat());
        // [N, G, Cg, T, O...] -> [G, O..., N, Cg, T]
        let perm: Vec<usize> = [vec![1], (4..4 + k).collect(), vec![0, 2, 3]].concat();
        let cols = self.transpose(cols, &perm);
        self.reshape_to(cols, vec![g, cv.positions(), cg * tt])
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

    /// aten.convolution(input, weight, bias?, stride, padding, dilation, transposed,
    /// output_padding, groups).
    pub(super) fn convolution(&mut self, op: &Op, ins: &[Value], out: &TensorType) -> LResult {
        let (x, w) = (ins[0], ins[1]);
        let cv = Conv::from_op(op, &self.t(x), &self.t(w))?;
        if out.shape != [vec![cv.n, cv.oc], cv.out.clone()].concat() {
            return Err(format!("output shape {:?} does not match the convolution's", out.shape));
        }
        let k = cv.size.len();
        let (g, cg, ocg, tt) = (cv.groups, cv.c / cv.groups, cv.oc / cv.groups, cv.taps());
        let cols = self.conv_columns(&cv, x);
        let wm = self.reshape_to(w, vec![g, ocg, cg * tt]);
        let wm = self.transpose(wm, &[0, 2, 1]);
        let y = self.matmul(cols, wm); // [G, M, OCg]
        let y = self.reshape_to(y, [vec![g], cv.out.clone(), vec![cv.n, ocg]].concat());
        // [G, O..., N, OCg] -> [N, G, OCg, O...]
        let perm: Vec<usize> = [vec![1 + k, 0, 2 + k], (1..1 + k).collect()].concat();
        let y = self.transpose(y, &perm);
        let mut y = self.reshape_to(y, out.shape.clone());
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
        if mask[0] {
            let wm = self.reshape_to(w, vec![g, ocg, cg * tt]);
            let dcols = self.matmul(rows, wm); // [G, M, Cg*T]
            let dcols = self.reshape_to(dcols, [vec![g], cv.out.clone(), vec![cv.n, cg, tt]].concat());
            // [G, O..., N, Cg, T] -> [N, G, Cg, T, O...]
            let perm: Vec<usize> = [vec![1 + k, 0, 2 + k, 3 + k], (1..1 + k).collect()].concat();
            let dcols = self.transpose(dcols, &perm);
            let dcols = self.reshape_to(dcols, [vec![cv.n, cv.c, tt], cv.out.clone()].concat());
            let padded = cv.padded();
            let mut acc: Option<Value> = None;
            for t in 0..tt {
                let idx = cv.tap(t);
                let tap = self.slice_dim(dcols, 2, t, 1, 1);
                let tap = self.reshape_to(tap, [vec![cv.n, cv.c], cv.out.clone()].concat());
                let low: Vec<usize> = [vec![0, 0], (0..k).map(|i| idx[i] * cv.dilation[i]).collect()].concat();
                let high: Vec<usize> = [
                    vec![0, 0],
                    (0..k).map(|i| padded[i] - (idx[i] * cv.dilation[i] + (cv.out[i] - 1) * cv.stride[i] + 1)).collect(),
                ]
                .concat();
                let interior: Vec<usize> = [vec![0, 0], cv.stride.iter().map(|s| s - 1).collect()].concat();
                let placed = self.pad(tap, &low, &high, &interior, 0.0);
                acc = Some(match acc {
                    None => placed,
                    Some(a) => self.binary("add", a, placed, results[0].elem)?,
                });
            }
            let acc = acc.ok_or("a convolution without kernel taps")?;
            let offsets: Vec<usize> = [vec![0, 0], cv.padding.clone()].concat();
            let gx = self.slice(acc, &offsets, &vec![1; 2 + k], [vec![cv.n, cv.c], cv.size.clone()].concat());
            out.push(gx);
        }
        if mask[1] {
            let cols = self.conv_columns(&cv, x); // [G, M, Cg*T]
            let colst = self.transpose(cols, &[0, 2, 1]);
            let gw = self.matmul(colst, rows); // [G, Cg*T, OCg]
            let gw = self.transpose(gw, &[0, 2, 1]);
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
