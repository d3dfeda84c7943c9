//! A reference interpreter for graph-level (`dojo.*`) IR, in plain f32 on the host.
//!
//! It defines what a graph means independently of placement, so tests can run the IR before
//! lowering here and the emitted Program on the simulator, and compare (bools are 0.0/1.0).

use dojo_compiler::dialect::{broadcast_shapes, matmul_epilogue, FusedExpr, FusedOperand};
use dojo_compiler::{Attr, ElemType, Func, TensorType, Value};

/// A dense row-major array.
#[derive(Clone, Debug, PartialEq)]
pub struct Array {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for d in (0..shape.len().saturating_sub(1)).rev() {
        s[d] = s[d + 1] * shape[d + 1];
    }
    s
}

/// For each element of `out_shape`, the flat index into an array of `shape` broadcast to it.
fn broadcast_index(shape: &[usize], out_shape: &[usize]) -> Vec<usize> {
    let n: usize = out_shape.iter().product();
    let off = out_shape.len() - shape.len();
    let st = strides(shape);
    let ost = strides(out_shape);
    (0..n)
        .map(|i| {
            let mut idx = 0;
            for (d, &len) in shape.iter().enumerate() {
                let coord = (i / ost[off + d]) % out_shape[off + d];
                if len != 1 {
                    idx += coord * st[d];
                }
            }
            idx
        })
        .collect()
}

pub(crate) fn unary(f: &str, x: f32) -> Option<f32> {
    Some(match f {
        "relu" => {
            if x.is_nan() {
                x
            } else {
                x.max(0.0)
            }
        }
        "neg" => -x,
        "exp" => x.exp(),
        "log" => x.ln(),
        "sqrt" => x.sqrt(),
        "rsqrt" => 1.0 / x.sqrt(),
        "abs" => x.abs(),
        "tanh" => x.tanh(),
        "sigmoid" => 1.0 / (1.0 + (-x).exp()),
        "reciprocal" => 1.0 / x,
        "erf" => libm::erf(x as f64) as f32,
        "convert" => x,
        _ => return None,
    })
}

pub(crate) fn binary(f: &str, a: f32, b: f32) -> Option<f32> {
    let t = |c: bool| if c { 1.0 } else { 0.0 };
    Some(match f {
        "add" => a + b,
        "sub" => a - b,
        "mul" => a * b,
        "div" => a / b,
        "maximum" => {
            if a.is_nan() || b.is_nan() {
                f32::NAN
            } else {
                a.max(b)
            }
        }
        "minimum" => {
            if a.is_nan() || b.is_nan() {
                f32::NAN
            } else {
                a.min(b)
            }
        }
        "pow" => a.powf(b),
        "eq" => t(a == b),
        "ne" => t(a != b),
        "lt" => t(a < b),
        "le" => t(a <= b),
        "gt" => t(a > b),
        "ge" => t(a >= b),
        _ => return None,
    })
}

/// Run a graph-level function on inputs; returns its results.
pub fn run(func: &Func, inputs: &[Array]) -> Result<Vec<Array>, String> {
    if inputs.len() != func.num_args {
        return Err(format!("@{} takes {} inputs, got {}", func.name, func.num_args, inputs.len()));
    }
    let mut vals: Vec<Option<Array>> = vec![None; func.value_types.len()];
    for (i, a) in inputs.iter().enumerate() {
        let t = func.tensor(Value(i as u32)).ok_or("argument is not a tensor")?;
        if t.shape != a.shape {
            return Err(format!("input {i} has shape {:?}, expected {:?}", a.shape, t.shape));
        }
        vals[i] = Some(a.clone());
    }
    for (i, op) in func.ops.iter().enumerate() {
        let get = |k: usize| -> Result<&Array, String> {
            op.operands.get(k).and_then(|v| vals[v.index()].as_ref()).ok_or(format!("op #{i}: operand #{k} has no value"))
        };
        let rt = func.tensor(op.result(0)).ok_or("result is not a tensor")?.clone();
        let kind = op.name.strip_prefix("dojo.").ok_or(format!("op #{i}: the interpreter runs dojo.* ops, not '{}'", op.name))?;
        let n: usize = rt.numel();
        let out = match kind {
            "constant" => {
                let v = op.attr("value").and_then(Attr::as_float).ok_or("constant without value")? as f32;
                Array { shape: rt.shape.clone(), data: vec![v; n] }
            }
            "matmul" => {
                let (a, b) = (get(0)?, get(1)?);
                let r = a.shape.len();
                // `[d..., k] @ [k, n]` multiplies the rows d... as one batch of one matrix.
                let flat = r > 3 && b.shape.len() == 2;
                let (m, k, nn) = if flat { (a.shape[..r - 1].iter().product(), a.shape[r - 1], b.shape[1]) } else { (a.shape[r - 2], a.shape[r - 1], b.shape[r - 1]) };
                let batch: usize = if flat { 1 } else { a.shape[..r - 2].iter().product() };
                let mut data = vec![0.0f32; batch * m * nn];
                for bt in 0..batch {
                    for i in 0..m {
                        for kk in 0..k {
                            let av = a.data[bt * m * k + i * k + kk];
                            for j in 0..nn {
                                // In k order, one fused multiply-add each (as the runtime's kernel).
                                let o = &mut data[bt * m * nn + i * nn + j];
                                *o = av.mul_add(b.data[bt * k * nn + kk * nn + j], *o);
                            }
                        }
                    }
                }
                let product = Array { shape: rt.shape.clone(), data };
                // The epilogue: its x0 is the product, x1.. the extra operands.
                match matmul_epilogue(op).map_err(|e| format!("op #{i}: {e}"))? {
                    None => product,
                    Some(e) => {
                        let extras = (2..op.operands.len()).map(get).collect::<Result<Vec<_>, _>>()?;
                        let ins: Vec<&Array> = std::iter::once(&product).chain(extras).collect();
                        fused(&e, &ins, &rt.shape).map_err(|e| format!("op #{i}: {e}"))?
                    }
                }
            }
            "select" => {
                let (c, a, b) = (get(0)?, get(1)?, get(2)?);
                let (ci, ai, bi) = (broadcast_index(&c.shape, &rt.shape), broadcast_index(&a.shape, &rt.shape), broadcast_index(&b.shape, &rt.shape));
                let data = (0..n).map(|e| if c.data[ci[e]] != 0.0 { a.data[ai[e]] } else { b.data[bi[e]] }).collect();
                Array { shape: rt.shape.clone(), data }
            }
            "reduce_sum" | "reduce_max" => {
                let is_max = kind == "reduce_max";
                let a = get(0)?;
                let dims: Vec<usize> = op.attr("dims").and_then(Attr::as_ints).unwrap_or(&[]).iter().map(|&d| d as usize).collect();
                let kept: Vec<usize> = a.shape.iter().enumerate().map(|(d, &l)| if dims.contains(&d) { 1 } else { l }).collect();
                let mut data = vec![if is_max { f32::NEG_INFINITY } else { 0.0f32 }; kept.iter().product()];
                let idx = broadcast_index(&kept, &a.shape);
                for (e, &o) in idx.iter().enumerate() {
                    let x = a.data[e];
                    if !is_max {
                        data[o] += x;
                    } else if data[o].is_nan() || x.is_nan() {
                        data[o] = f32::NAN;
                    } else {
                        data[o] = data[o].max(x);
                    }
                }
                Array { shape: rt.shape.clone(), data }
            }
            "transpose" => {
                let a = get(0)?;
                let perm: Vec<usize> = op.attr("perm").and_then(Attr::as_ints).unwrap_or(&[]).iter().map(|&d| d as usize).collect();
                let ist = strides(&a.shape);
                let ost = strides(&rt.shape);
                let data = (0..n)
                    .map(|e| {
                        let src: usize = (0..rt.shape.len()).map(|d| ((e / ost[d]) % rt.shape[d]) * ist[perm[d]]).sum();
                        a.data[src]
                    })
                    .collect();
                Array { shape: rt.shape.clone(), data }
            }
            "reshape" | "on_chip" => Array { shape: rt.shape.clone(), data: get(0)?.data.clone() },
            "broadcast" => {
                let a = get(0)?;
                let idx = broadcast_index(&a.shape, &rt.shape);
                Array { shape: rt.shape.clone(), data: idx.iter().map(|&e| a.data[e]).collect() }
            }
            "convert" => {
                let a = get(0)?;
                let data = if rt.elem == ElemType::I1 {
                    a.data.iter().map(|&x| if x != 0.0 { 1.0 } else { 0.0 }).collect()
                } else if let Some((format, bias)) = crate::precision::storage_format(rt.elem) {
                    // The compile-time bias of the type, round to nearest even.
                    let codec = dojo_runtime::Codec::new(format, bias).map_err(|e| e.to_string())?;
                    let mut data = a.data.clone();
                    codec.quantize_slice(&mut data, dojo_runtime::Rounding::NearestEven);
                    data
                } else {
                    a.data.clone()
                };
                Array { shape: rt.shape.clone(), data }
            }
            "slice" => {
                let a = get(0)?;
                let ints = |k: &str| -> Vec<usize> { op.attr(k).and_then(Attr::as_ints).unwrap_or(&[]).iter().map(|&x| x as usize).collect() };
                let (offsets, steps) = (ints("offsets"), ints("strides"));
                let (ist, ost) = (strides(&a.shape), strides(&rt.shape));
                let data = (0..n)
                    .map(|e| {
                        let src: usize =
                            (0..rt.shape.len()).map(|d| (offsets[d] + ((e / ost[d]) % rt.shape[d]) * steps[d]) * ist[d]).sum();
                        a.data[src]
                    })
                    .collect();
                Array { shape: rt.shape.clone(), data }
            }
            "pad" => {
                let a = get(0)?;
                let ints = |k: &str| -> Vec<usize> { op.attr(k).and_then(Attr::as_ints).unwrap_or(&[]).iter().map(|&x| x as usize).collect() };
                let (low, interior) = (ints("low"), ints("interior"));
                let value = op.attr("value").and_then(Attr::as_float).unwrap_or(0.0) as f32;
                let (ist, ost) = (strides(&a.shape), strides(&rt.shape));
                let mut data = vec![value; n];
                for (e, &x) in a.data.iter().enumerate() {
                    let dst: usize =
                        (0..a.shape.len()).map(|d| (low[d] + ((e / ist[d]) % a.shape[d]) * (interior[d] + 1)) * ost[d]).sum();
                    data[dst] = x;
                }
                Array { shape: rt.shape.clone(), data }
            }
            "embedding" | "embedding_grad" => {
                let (a, ids) = (get(0)?, get(1)?);
                let d = *a.shape.last().ok_or("embedding needs rank >= 1")?;
                let rows = if kind == "embedding" { a.shape[0] } else { rt.shape[0] };
                let skip = op.attr("padding_idx").and_then(Attr::as_int);
                let mut data = vec![0.0f32; n];
                for (i, &id) in ids.data.iter().enumerate() {
                    if !(id >= 0.0 && (id as usize) < rows) {
                        return Err(format!("op #{i}: embedding index {id} is out of range for {rows} rows"));
                    }
                    let id = id as usize;
                    if kind == "embedding" {
                        data[i * d..(i + 1) * d].copy_from_slice(&a.data[id * d..(id + 1) * d]);
                    } else if Some(id as i64) != skip {
                        for k in 0..d {
                            data[id * d + k] += a.data[i * d + k];
                        }
                    }
                }
                Array { shape: rt.shape.clone(), data }
            }
            "random" => {
                // The simulator's stream with the default run seed 0.
                let key = dojo_runtime::stream_key(0, op.attr("stream").and_then(Attr::as_int).unwrap_or(0) as u64);
                Array { shape: rt.shape.clone(), data: (0..n).map(|k| dojo_runtime::uniform(key, k as u64)).collect() }
            }
            "iota" => {
                let dim = op.attr("dim").and_then(Attr::as_int).unwrap_or(0) as usize;
                let st = strides(&rt.shape);
                Array { shape: rt.shape.clone(), data: (0..n).map(|e| ((e / st[dim]) % rt.shape[dim]) as f32).collect() }
            }
            "concat" => {
                let dim = op.attr("dim").and_then(Attr::as_int).unwrap_or(0) as usize;
                let ost = strides(&rt.shape);
                let mut data = vec![0.0f32; n];
                let mut at = 0;
                for k in 0..op.operands.len() {
                    let a = get(k)?;
                    let ist = strides(&a.shape);
                    for (e, &x) in a.data.iter().enumerate() {
                        let dst: usize = (0..a.shape.len())
                            .map(|d| ((e / ist[d]) % a.shape[d] + if d == dim { at } else { 0 }) * ost[d])
                            .sum();
                        data[dst] = x;
                    }
                    at += a.shape[dim];
                }
                Array { shape: rt.shape.clone(), data }
            }
            "fused" => {
                let expr = FusedExpr::parse(op.attr("expr").and_then(Attr::as_str).unwrap_or("")).map_err(|e| format!("op #{i}: {e}"))?;
                let ins = (0..op.operands.len()).map(get).collect::<Result<Vec<_>, _>>()?;
                fused(&expr, &ins, &rt.shape).map_err(|e| format!("op #{i}: {e}"))?
            }
            "cmp" => {
                let pred = op.attr("predicate").and_then(Attr::as_str).unwrap_or("");
                elementwise(pred, &[get(0)?, get(1)?], &rt.shape)?
            }
            f => {
                let ins = (0..op.operands.len()).map(get).collect::<Result<Vec<_>, _>>()?;
                elementwise(f, &ins, &rt.shape)?
            }
        };
        vals[op.result(0).index()] = Some(out);
    }
    func.returns
        .iter()
        .map(|v| vals[v.index()].clone().ok_or(format!("returned %{} has no value", v.0)))
        .collect()
}

/// A fused expression over `ins` (broadcast to `shape`), element by element.
fn fused(expr: &FusedExpr, ins: &[&Array], shape: &[usize]) -> Result<Array, String> {
    let n: usize = shape.iter().product();
    let idx: Vec<Vec<usize>> = ins.iter().map(|a| broadcast_index(&a.shape, shape)).collect();
    let mut t = vec![0.0f32; expr.steps.len()];
    let mut data = Vec::with_capacity(n);
    for e in 0..n {
        for (j, step) in expr.steps.iter().enumerate() {
            let arg = |a: &FusedOperand| match *a {
                FusedOperand::Input(k) => ins[k].data[idx[k][e]],
                FusedOperand::Step(s) => t[s],
                FusedOperand::Const(c) => c as f32,
            };
            let v: Vec<f32> = step.args.iter().map(arg).collect();
            t[j] = match v.as_slice() {
                &[x] => unary(step.f, x),
                &[a, b] => binary(step.f, a, b),
                &[c, a, b] => Some(if c != 0.0 { a } else { b }),
                _ => None,
            }
            .ok_or(format!("no function '{}'", step.f))?;
        }
        data.push(t[expr.steps.len() - 1]);
    }
    Ok(Array { shape: shape.to_vec(), data })
}

fn elementwise(f: &str, ins: &[&Array], shape: &[usize]) -> Result<Array, String> {
    let shapes: Vec<&[usize]> = ins.iter().map(|a| a.shape.as_slice()).collect();
    let want = broadcast_shapes(&shapes)?;
    if want != shape {
        return Err(format!("'{f}' result shape {shape:?} is not the broadcast shape {want:?}"));
    }
    let n: usize = shape.iter().product();
    let data = match ins {
        [a] => a.data.iter().map(|&x| unary(f, x).ok_or(format!("unknown function '{f}'"))).collect::<Result<_, _>>()?,
        [a, b] => {
            let (ai, bi) = (broadcast_index(&a.shape, shape), broadcast_index(&b.shape, shape));
            (0..n).map(|e| binary(f, a.data[ai[e]], b.data[bi[e]]).ok_or(format!("unknown function '{f}'"))).collect::<Result<_, _>>()?
        }
        _ => return Err(format!("'{f}' with {} operands", ins.len())),
    };
    Ok(Array { shape: shape.to_vec(), data })
}

/// Deterministic pseudo-random values in [-1, 1) (an LCG is enough for test data).
pub fn random_data(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// Random inputs for `func`'s arguments (bools as 0.0/1.0); argument `i` uses seed `seed + i`.
pub fn random_inputs(func: &Func, seed: u64) -> Result<Vec<Array>, String> {
    (0..func.num_args)
        .map(|i| {
            let t = func.tensor(Value(i as u32)).ok_or(format!("argument {i} is not a tensor"))?;
            Ok(random_array(t, seed + i as u64))
        })
        .collect()
}

/// A random value of type `t`: floats in [-1, 1), bools, or small non-negative integers
/// (0 to 3: valid ids of any table of at least 4 rows).
pub fn random_array(t: &TensorType, seed: u64) -> Array {
    let mut data = random_data(t.numel(), seed);
    match t.elem {
        ElemType::I1 => data.iter_mut().for_each(|x| *x = if *x > 0.0 { 1.0 } else { 0.0 }),
        ElemType::I8 | ElemType::I16 | ElemType::I32 | ElemType::I64 => data.iter_mut().for_each(|x| *x = (x.abs() * 4.0).floor().min(3.0)),
        _ => {}
    }
    Array { shape: t.shape.clone(), data }
}

/// Whether `got` equals `want` within f32 tolerance (relative 1e-5; NaN equals NaN).
pub fn close(got: &[Array], want: &[Array]) -> Result<(), String> {
    if got.len() != want.len() {
        return Err(format!("{} outputs, reference has {}", got.len(), want.len()));
    }
    for (k, (g, w)) in got.iter().zip(want).enumerate() {
        if g.shape != w.shape {
            return Err(format!("output {k} has shape {:?}, reference {:?}", g.shape, w.shape));
        }
        for (e, (x, y)) in g.data.iter().zip(&w.data).enumerate() {
            let tol = 1e-5 * (1.0 + y.abs().max(x.abs()));
            if !(x == y || (x - y).abs() <= tol || (x.is_nan() && y.is_nan())) {
                return Err(format!("output {k}[{e}] = {x}, reference {y}"));
            }
        }
    }
    Ok(())
}

/// Run two graph-level functions with the same signature on the same random inputs (one run
/// per seed) and compare their results: the semantic check of rewrites.
pub fn check_equivalent(reference: &Func, candidate: &Func, seeds: &[u64]) -> Result<(), String> {
    for &seed in seeds {
        let inputs = random_inputs(reference, seed)?;
        let want = run(reference, &inputs).map_err(|e| format!("reference: {e}"))?;
        let got = run(candidate, &inputs).map_err(|e| format!("candidate: {e}"))?;
        close(&got, &want).map_err(|e| format!("@{} with seed {seed}: {e}", reference.name))?;
    }
    Ok(())
}
