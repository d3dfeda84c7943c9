//! Simulator: functional results against references, timing sanity, determinism.

mod common;

use common::*;
use dojo_runtime::*;

/// An 8x8 @ 8x8 matmul as 2x2 SUMMA on the 2x2 block of cores at (0,0): core (i,j) owns the
/// (i,j) blocks of A, B and C; at step k it receives A(i,k) and B(k,j) and accumulates.
#[allow(clippy::needless_range_loop)] // i, j index several block tables at once
fn summa_program() -> Program {
    let mut b = Builder::new("d1:4x4");
    let (n, t) = (8usize, 4usize);
    let ia = b.input(&[n, n]);
    let ib = b.input(&[n, n]);
    let oc = b.output(&[n, n]);
    let mut own_a = [[0; 2]; 2];
    let mut own_b = [[0; 2]; 2];
    let mut c = [[0; 2]; 2];
    let mut tmp = [[(0, 0); 2]; 2];
    for i in 0..2 {
        for j in 0..2 {
            let core = (i as u32, j as u32);
            own_a[i][j] = b.buf(core, &[t, t]);
            own_b[i][j] = b.buf(core, &[t, t]);
            c[i][j] = b.buf(core, &[t, t]);
            tmp[i][j] = (b.buf(core, &[t, t]), b.buf(core, &[t, t]));
            let src = Region::new(vec![i * t, j * t], vec![t, t]);
            b.push(Instr::Load {
                input: ia,
                src: src.clone(),
                buf: own_a[i][j],
                dst: Region::full(&[t, t]),
            });
            b.push(Instr::Load {
                input: ib,
                src,
                buf: own_b[i][j],
                dst: Region::full(&[t, t]),
            });
        }
    }
    let full = Region::full(&[t, t]);
    for k in 0..2 {
        for i in 0..2 {
            for j in 0..2 {
                let (ta, tb) = tmp[i][j];
                b.push(Instr::Copy {
                    src: own_a[i][k],
                    src_region: full.clone(),
                    dst: ta,
                    dst_region: full.clone(),
                });
                b.push(Instr::Copy {
                    src: own_b[k][j],
                    src_region: full.clone(),
                    dst: tb,
                    dst_region: full.clone(),
                });
                b.push(Instr::Kernel {
                    op: KernelOp::MatMul { accumulate: true, epilogue: vec![] },
                    inputs: vec![ta, tb],
                    output: c[i][j],
                });
            }
        }
    }
    for i in 0..2 {
        for j in 0..2 {
            b.push(Instr::Store {
                buf: c[i][j],
                src: full.clone(),
                output: oc,
                dst: Region::new(vec![i * t, j * t], vec![t, t]),
            });
        }
    }
    b.p
}

fn summa_inputs() -> Vec<(Vec<usize>, Vec<f32>)> {
    vec![(vec![8, 8], data(64, 1)), (vec![8, 8], data(64, 2))]
}

#[test]
fn summa_matmul_on_four_cores_equals_the_reference_exactly() {
    let p = summa_program();
    let ins = summa_inputs();
    let (outs, prof) = run(&p, &ins).unwrap();
    let want = matmul_ref(&ins[0].1, &ins[1].1, 8, 8, 8);
    assert_eq!(outs.len(), 1);
    assert_eq!(outs[0].shape, vec![8, 8]);
    assert_eq!(bits(&outs[0].data), bits(&want));

    assert_eq!(prof.cores_used, 4);
    assert_eq!(prof.instructions, p.instrs.len());
    assert_eq!(prof.host_bytes, 3 * 64 * 4);
    assert_eq!(prof.flops, 2 * 8 * 8 * 8);
    // 16 copies of a 4x4 f32 block (64 B); 8 of them stay on their core.
    assert_eq!(prof.copy_bytes, 8 * 64);
    assert_eq!(prof.mesh_bytes, 8 * 64); // every remote copy is one hop in a 2x2 block
    assert_eq!(
        prof.link_bytes.iter().map(|(_, b)| *b).sum::<u64>(),
        prof.mesh_bytes
    );
    assert_eq!(prof.peak_sram_bytes, 5 * 64);
    assert_eq!(prof.busy_seconds_per_core.len(), 4);
    assert!(prof.simulated_seconds > 0.0);
    assert!(prof
        .timeline
        .iter()
        .all(|e| e.end_s >= e.start_s && e.end_s <= prof.simulated_seconds));
}

#[test]
fn runs_are_bit_identical() {
    let p = summa_program();
    let ins = summa_inputs();
    let (o1, p1) = run(&p, &ins).unwrap();
    let (o2, p2) = run(&p, &ins).unwrap();
    assert_eq!(bits(&o1[0].data), bits(&o2[0].data));
    assert_eq!(p1, p2);
    assert_eq!(
        serde_json::to_string(&p1).unwrap(),
        serde_json::to_string(&p2).unwrap()
    );
    assert_eq!(p1.chrome_trace_json(), p2.chrome_trace_json());
    // The program itself round-trips through JSON and runs the same.
    let q = Program::from_json(&p.to_json()).unwrap();
    let (o3, p3) = run(&q, &ins).unwrap();
    assert_eq!(bits(&o1[0].data), bits(&o3[0].data));
    assert_eq!(p1, p3);
}

#[test]
fn binary_broadcasts_numpy_style() {
    let a = vec![1.0, 2.0, 3.0]; // [3, 1]
    let b = vec![10.0, 20.0, 30.0, 40.0]; // [4]
    let out = run_kernel(
        KernelOp::Binary { op: BinaryOp::Add },
        &[(vec![3, 1], a.clone()), (vec![4], b.clone())],
        &[3, 4],
    );
    let want: Vec<f32> = (0..3)
        .flat_map(|i| (0..4).map(move |j| [1.0, 2.0, 3.0][i] + [10.0, 20.0, 30.0, 40.0][j]))
        .collect();
    assert_eq!(out, want);
    let out = run_kernel(
        KernelOp::Binary { op: BinaryOp::Sub },
        &[(vec![4], b.clone()), (vec![3, 1], a.clone())],
        &[3, 4],
    );
    assert_eq!(out[4..8], [8.0, 18.0, 28.0, 38.0]); // row 1: b - 2
                                                    // Comparisons give 1.0 / 0.0; a rank-0 operand broadcasts everywhere.
    let out = run_kernel(
        KernelOp::Binary { op: BinaryOp::Gt },
        &[(vec![4], b), (vec![], vec![25.0])],
        &[4],
    );
    assert_eq!(out, vec![0.0, 0.0, 1.0, 1.0]);
    // NaN propagates through Max (like torch.maximum) and does not stop the run.
    let out = run_kernel(
        KernelOp::Binary { op: BinaryOp::Max },
        &[(vec![2], vec![f32::NAN, 1.0]), (vec![2], vec![0.0, 2.0])],
        &[2],
    );
    assert!(out[0].is_nan());
    assert_eq!(out[1], 2.0);
}

/// Every broadcast of a binary kernel (the row-by-row ones and the general stride walk)
/// pairs the same elements as numpy would.
#[test]
fn binary_broadcasts_pair_elements_like_numpy() {
    fn reference(a: &[usize], b: &[usize], out: &[usize], x: &[f32], y: &[f32]) -> Vec<f32> {
        let at = |shape: &[usize], idx: &[usize]| {
            let lead = out.len() - shape.len();
            shape.iter().enumerate().fold(0, |off, (d, &n)| off * n + if n == 1 { 0 } else { idx[lead + d] })
        };
        let total: usize = out.iter().product();
        (0..total)
            .map(|mut flat| {
                let mut idx = vec![0; out.len()];
                for d in (0..out.len()).rev() {
                    idx[d] = flat % out[d];
                    flat /= out[d];
                }
                x[at(a, &idx)] - y[at(b, &idx)]
            })
            .collect()
    }
    let cases: [(&[usize], &[usize], &[usize]); 12] = [
        (&[2, 3, 4], &[2, 3, 1], &[2, 3, 4]),
        (&[2, 3, 1], &[2, 3, 4], &[2, 3, 4]),
        (&[2, 3, 4], &[4], &[2, 3, 4]),
        (&[4], &[2, 3, 4], &[2, 3, 4]),
        (&[2, 3, 4], &[1, 1, 4], &[2, 3, 4]),
        (&[2, 3, 4], &[], &[2, 3, 4]),
        (&[1], &[2, 3, 4], &[2, 3, 4]),
        (&[3, 1], &[1, 4], &[3, 4]),
        (&[1, 3, 4], &[3, 1], &[1, 3, 4]),
        (&[2, 3, 4], &[3, 4], &[2, 3, 4]),
        (&[2, 1, 4], &[2, 3, 4], &[2, 3, 4]),
        (&[2, 3, 1], &[1, 3, 4], &[2, 3, 4]),
    ];
    for (a, b, out) in cases {
        let x: Vec<f32> = (0..a.iter().product::<usize>()).map(|v| v as f32 * 1.5).collect();
        let y: Vec<f32> = (0..b.iter().product::<usize>()).map(|v| 100.0 - v as f32).collect();
        let got = run_kernel(KernelOp::Binary { op: BinaryOp::Sub }, &[(a.to_vec(), x.clone()), (b.to_vec(), y.clone())], out);
        assert_eq!(got, reference(a, b, out, &x, &y), "{a:?} - {b:?} -> {out:?}");
    }
}

/// `pow` by 2 or 3 multiplies out as torch does (`x * x * x` rounds twice and differs from
/// `powf` in the last bit for about a quarter of inputs, these among them); other exponents
/// use `powf`.
#[test]
fn pow_by_two_or_three_multiplies_out_like_torch() {
    let x: Vec<f32> = vec![0.104_900_11, -0.535_669_4, 0.361_595_06, 0.947_081, 2.232_176, 1.024_658_2];
    let pow = |e: f32| run_kernel(KernelOp::Binary { op: BinaryOp::Pow }, &[(vec![6], x.clone()), (vec![], vec![e])], &[6]);
    assert_eq!(bits(&pow(3.0)), bits(&x.iter().map(|a| a * a * a).collect::<Vec<_>>()));
    assert_eq!(bits(&pow(2.0)), bits(&x.iter().map(|a| a * a).collect::<Vec<_>>()));
    assert_eq!(bits(&pow(2.5)), bits(&x.iter().map(|a| a.powf(2.5)).collect::<Vec<_>>()));
}

/// tanh stays within 2 ulp of the exact value over [-12, 12], around the edge between its
/// polynomial and its exponential, and on zeros, tiny values, infinities and NaN.
#[test]
fn tanh_is_within_two_ulp() {
    let mut x: Vec<f32> = (0..100_000).map(|i| -12.0 + 24.0 * i as f32 / 100_000.0).collect();
    x.extend([0.0, -0.0, 0.625, -0.625, 0.624_999_94, 1e-30, -1e-30, 1e-45, 9.0, 9.1, 20.0, f32::INFINITY, f32::NEG_INFINITY, f32::MAX, f32::NAN]);
    let got = run_kernel(KernelOp::Unary { op: UnaryOp::Tanh }, &[(vec![x.len()], x.clone())], &[x.len()]);
    for (&v, &t) in x.iter().zip(&got) {
        let want = (v as f64).tanh() as f32;
        if v.is_nan() {
            assert!(t.is_nan(), "tanh(NaN) = {t}");
            continue;
        }
        let ulps = (i64::from(t.to_bits()) - i64::from(want.to_bits())).abs();
        assert!(ulps <= 2, "tanh({v:e}) = {t:e}, want {want:e} ({ulps} ulp apart)");
        // Where tanh is +-1 in f32 (from 9.02 on), exactly that: a GELU of a large negative
        // value is then 0, as in eager.
        if v.abs() >= 9.02 {
            assert_eq!(t, want, "tanh({v:e})");
        }
    }
}

#[test]
fn select_broadcasts_all_three_inputs() {
    let cond = vec![1.0, 0.0, 1.0]; // [3, 1]
    let a = vec![1.0, 2.0]; // [1, 2]
    let out = run_kernel(
        KernelOp::Select,
        &[(vec![3, 1], cond), (vec![1, 2], a), (vec![], vec![-5.0])],
        &[3, 2],
    );
    assert_eq!(out, vec![1.0, 2.0, -5.0, -5.0, 1.0, 2.0]);
}

#[test]
fn reduce_sum_keeps_dims() {
    let x: Vec<f32> = (0..24).map(|v| v as f32).collect(); // [2, 3, 4]
    let out = run_kernel(
        KernelOp::ReduceSum { dims: vec![0, 2] },
        &[(vec![2, 3, 4], x.clone())],
        &[1, 3, 1],
    );
    let want: Vec<f32> = (0..3)
        .map(|j| {
            (0..2)
                .flat_map(|i| (0..4).map(move |k| (i * 12 + j * 4 + k) as f32))
                .sum()
        })
        .collect();
    assert_eq!(out, want);
    let out = run_kernel(
        KernelOp::ReduceSum { dims: vec![] },
        &[(vec![2, 3, 4], x.clone())],
        &[2, 3, 4],
    );
    assert_eq!(out, x);
}

#[test]
fn transpose_follows_torch_permute() {
    let x: Vec<f32> = (0..24).map(|v| v as f32).collect(); // [2, 3, 4]
    let out = run_kernel(
        KernelOp::Transpose {
            perm: vec![2, 0, 1],
        },
        &[(vec![2, 3, 4], x.clone())],
        &[4, 2, 3],
    );
    for j0 in 0..4 {
        for j1 in 0..2 {
            for j2 in 0..3 {
                // out[j0, j1, j2] = x[j1, j2, j0]
                assert_eq!(out[j0 * 6 + j1 * 3 + j2], x[j1 * 12 + j2 * 4 + j0]);
            }
        }
    }
    // Swapping the last two dims (a matrix, a batch of them, one of size 1) takes its own
    // path: out[b, j, i] = x[b, i, j].
    for (batch, r, c) in [(1, 3, 4), (2, 3, 4), (6, 5, 1), (2, 1, 7)] {
        let x: Vec<f32> = (0..batch * r * c).map(|v| v as f32).collect();
        let (shape, perm, out_shape) =
            if batch == 1 { (vec![r, c], vec![1, 0], vec![c, r]) } else { (vec![batch, r, c], vec![0, 2, 1], vec![batch, c, r]) };
        let out = run_kernel(KernelOp::Transpose { perm }, &[(shape, x.clone())], &out_shape);
        let want: Vec<f32> = (0..batch).flat_map(|b| (0..c).flat_map(move |j| (0..r).map(move |i| (b * r * c + i * c + j) as f32))).collect();
        assert_eq!(out, want, "{batch} x {r} x {c}");
    }
}

#[test]
fn strided_gathers_of_size_one_dims() {
    // Every dim of size 1 (one element, strided or not) and a strided slice with unit dims.
    let x: Vec<f32> = (0..5).map(|v| v as f32).collect();
    let one = |offsets: Vec<usize>, strides: Vec<usize>, input: Vec<usize>, out: &[usize]| {
        run_kernel(KernelOp::Slice { offsets, strides }, &[(input, x.clone())], out)
    };
    assert_eq!(one(vec![3], vec![2], vec![5], &[1]), vec![3.0]);
    assert_eq!(one(vec![0, 1], vec![1, 3], vec![1, 5], &[1, 2]), vec![1.0, 4.0]);
    assert_eq!(run_kernel(KernelOp::Transpose { perm: vec![1, 0] }, &[(vec![1, 1], vec![7.0])], &[1, 1]), vec![7.0]);
}

#[test]
fn reshape_unary_scale_and_batched_matmul() {
    let x: Vec<f32> = (0..12).map(|v| v as f32 - 6.0).collect();
    assert_eq!(
        run_kernel(KernelOp::Reshape, &[(vec![2, 6], x.clone())], &[3, 4]),
        x
    );
    let relu = run_kernel(
        KernelOp::Unary { op: UnaryOp::Relu },
        &[(vec![12], x.clone())],
        &[12],
    );
    assert_eq!(relu, x.iter().map(|v| v.max(0.0)).collect::<Vec<_>>());
    let neg = run_kernel(
        KernelOp::Unary { op: UnaryOp::Neg },
        &[(vec![12], x.clone())],
        &[12],
    );
    assert_eq!(neg, x.iter().map(|v| -v).collect::<Vec<_>>());
    let sig = run_kernel(
        KernelOp::Unary {
            op: UnaryOp::Sigmoid,
        },
        &[(vec![1], vec![0.0])],
        &[1],
    );
    assert_eq!(sig, vec![0.5]);
    let half = run_kernel(
        KernelOp::Scale { factor: 0.5 },
        &[(vec![12], x.clone())],
        &[12],
    );
    assert_eq!(half, x.iter().map(|v| v * 0.5).collect::<Vec<_>>());

    let (bt, m, k, n) = (3, 2, 5, 4);
    let a = data(bt * m * k, 3);
    let b = data(bt * k * n, 4);
    let out = run_kernel(
        KernelOp::MatMul { accumulate: false, epilogue: vec![] },
        &[(vec![bt, m, k], a.clone()), (vec![bt, k, n], b.clone())],
        &[bt, m, n],
    );
    for t in 0..bt {
        let want = matmul_ref(&a[t * m * k..][..m * k], &b[t * k * n..][..k * n], m, k, n);
        assert_eq!(bits(&out[t * m * n..][..m * n]), bits(&want));
    }
}

/// The matmul kernel keeps blocks of the output in registers: every block shape (full 4 x 16
/// and 4 x 8 tiles, 8 x 8 and 8 x 1 tiles of a narrow output, single rows and columns at the
/// edges) sums in k order from 0.0, bit for bit the reference; with `accumulate` it continues
/// from the output's contents.
#[test]
fn tiled_matmul_sums_in_k_order() {
    for &(m, k, n) in &[(1, 1, 1), (4, 3, 16), (5, 7, 8), (9, 33, 17), (13, 64, 40), (4, 0, 9), (19, 5, 8), (17, 9, 12), (12, 2, 3)] {
        let a = data(m * k, m + n);
        let b = data(k * n, k + 1);
        let out = run_kernel(
            KernelOp::MatMul { accumulate: false, epilogue: vec![] },
            &[(vec![m, k], a.clone()), (vec![k, n], b.clone())],
            &[m, n],
        );
        assert_eq!(bits(&out), bits(&matmul_ref(&a, &b, m, k, n)), "{m}x{k}x{n}");
    }
    // Accumulating: k split into two steps gives the bits of the unsplit product.
    let (m, k, n) = (6, 10, 19);
    let (a, b) = (data(m * k, 1), data(k * n, 2));
    let mut bld = Builder::new("core");
    let (ia, ib) = (bld.input(&[m, 4]), bld.input(&[4, n]));
    let (ja, jb) = (bld.input(&[m, k - 4]), bld.input(&[k - 4, n]));
    let bufs: Vec<BufId> = [ia, ib, ja, jb].iter().map(|&i| bld.load_full(i, (0, 0))).collect();
    let out = bld.buf((0, 0), &[m, n]);
    for (x, y) in [(bufs[0], bufs[1]), (bufs[2], bufs[3])] {
        bld.push(Instr::Kernel { op: KernelOp::MatMul { accumulate: true, epilogue: vec![] }, inputs: vec![x, y], output: out });
    }
    bld.store_full(out);
    let cols = |v: &[f32], lo: usize, hi: usize| -> Vec<f32> { (0..m).flat_map(|i| v[i * k + lo..i * k + hi].to_vec()).collect() };
    let ins = [
        (vec![m, 4], cols(&a, 0, 4)),
        (vec![4, n], b[..4 * n].to_vec()),
        (vec![m, k - 4], cols(&a, 4, k)),
        (vec![k - 4, n], b[4 * n..].to_vec()),
    ];
    let (outs, _) = run(&bld.p, &ins).expect("runs");
    assert_eq!(bits(&outs[0].data), bits(&matmul_ref(&a, &b, m, k, n)));
}

#[test]
fn fill_and_copy_between_boxes() {
    let mut b = Builder::new("d1:1x3");
    let x = b.buf((0, 0), &[2, 3]);
    b.push(Instr::Fill { buf: x, value: 7.0 });
    let y = b.buf((0, 2), &[3, 4]);
    b.push(Instr::Copy {
        src: x,
        src_region: Region::new(vec![0, 1], vec![2, 2]),
        dst: y,
        dst_region: Region::new(vec![1, 2], vec![2, 2]),
    });
    b.store_full(y);
    let (outs, prof) = run(&b.p, &[]).unwrap();
    assert_eq!(
        outs[0].data,
        vec![0., 0., 0., 0., 0., 0., 7., 7., 0., 0., 7., 7.]
    );
    assert_eq!(prof.copy_bytes, 16);
    assert_eq!(prof.mesh_bytes, 32); // 2 hops
    assert_eq!(prof.link_bytes.len(), 2);
}

/// Copies, slices and pads move rows of every length (short ones without a `memcpy` call, in
/// overlapping blocks; every other value in pairs): each row lands whole and nothing beside
/// it is written.
#[test]
fn short_rows_of_every_length_copy_slice_and_pad_exactly() {
    let src: Vec<f32> = (0..3 * 45).map(|v| v as f32).collect();
    let at = |r: usize, c: usize| (r * 45 + c) as f32;
    for len in 1..=40 {
        let mut b = Builder::new("core");
        let i = b.input(&[3, 45]);
        let x = b.load_full(i, (0, 0));
        let y = b.buf((0, 0), &[3, 50]);
        b.push(Instr::Fill { buf: y, value: -1.0 });
        b.push(Instr::Copy { src: x, src_region: Region::new(vec![0, 2], vec![3, len]), dst: y, dst_region: Region::new(vec![0, 5], vec![3, len]) });
        b.store_full(y);
        let (outs, _) = run(&b.p, &[(vec![3, 45], src.clone())]).unwrap();
        let want: Vec<f32> = (0..3).flat_map(|r| (0..50).map(move |c| if (5..5 + len).contains(&c) { at(r, c - 3) } else { -1.0 })).collect();
        assert_eq!(outs[0].data, want, "copy of rows of {len}");

        let sliced = run_kernel(KernelOp::Slice { offsets: vec![0, 2], strides: vec![1, 1] }, &[(vec![3, 45], src.clone())], &[3, len]);
        let want: Vec<f32> = (0..3).flat_map(|r| (0..len).map(move |c| at(r, c + 2))).collect();
        assert_eq!(sliced, want, "slice of rows of {len}");
        if 2 + 2 * (len - 1) < 45 {
            // Every other value (the last row's source ends right after its last value at 22).
            let sliced = run_kernel(KernelOp::Slice { offsets: vec![0, 2], strides: vec![1, 2] }, &[(vec![3, 45], src.clone())], &[3, len]);
            let want: Vec<f32> = (0..3).flat_map(|r| (0..len).map(move |c| at(r, 2 + 2 * c))).collect();
            assert_eq!(sliced, want, "slice of every other value, rows of {len}");
        }

        let rows: Vec<f32> = (0..3 * len).map(|v| v as f32).collect();
        let padded = run_kernel(KernelOp::Pad { low: vec![0, 1], interior: vec![0, 0], value: -1.0 }, &[(vec![3, len], rows)], &[3, len + 3]);
        let want: Vec<f32> = (0..3).flat_map(|r| (0..len + 3).map(move |c| if (1..=len).contains(&c) { (r * len + c - 1) as f32 } else { -1.0 })).collect();
        assert_eq!(padded, want, "pad of rows of {len}");
    }
}

#[test]
fn copies_of_strided_boxes() {
    // Every other element on both sides: x[1, 1.., 1] -> y[0, .., 1].
    let mut b = Builder::new("d1:1x2");
    let i = b.input(&[2, 4, 2]);
    let x = b.load_full(i, (0, 0));
    let y = b.buf((0, 1), &[1, 3, 2]);
    b.push(Instr::Copy { src: x, src_region: Region::new(vec![1, 1, 1], vec![1, 3, 1]), dst: y, dst_region: Region::new(vec![0, 0, 1], vec![1, 3, 1]) });
    b.store_full(y);
    let data: Vec<f32> = (0..16).map(|v| v as f32).collect();
    let (outs, _) = run(&b.p, &[(vec![2, 4, 2], data)]).unwrap();
    assert_eq!(outs[0].data, vec![0., 11., 0., 13., 0., 15.]);

    // Planes of rows of contiguous values, and one run of them: x[1.., 1..3, 1..4] ->
    // y[.., 1.., 2..5], then x[0, 0, ..] -> y[0, 0, 1..].
    let mut b = Builder::new("core");
    let i = b.input(&[3, 4, 5]);
    let x = b.load_full(i, (0, 0));
    let y = b.buf((0, 0), &[2, 3, 6]);
    b.push(Instr::Copy { src: x, src_region: Region::new(vec![1, 1, 1], vec![2, 2, 3]), dst: y, dst_region: Region::new(vec![0, 1, 2], vec![2, 2, 3]) });
    b.push(Instr::Copy { src: x, src_region: Region::new(vec![0, 0, 0], vec![1, 1, 5]), dst: y, dst_region: Region::new(vec![0, 0, 1], vec![1, 1, 5]) });
    b.store_full(y);
    let data: Vec<f32> = (0..60).map(|v| v as f32).collect();
    let (outs, _) = run(&b.p, &[(vec![3, 4, 5], data)]).unwrap();
    let want: Vec<f32> = (0..2)
        .flat_map(|p| (0..3).flat_map(move |r| (0..6).map(move |c| (p, r, c))))
        .map(|(p, r, c)| match (p, r, c) {
            (0, 0, 1..=5) => (c - 1) as f32,
            (_, 1..=2, 2..=4) => ((p + 1) * 20 + r * 5 + (c - 1)) as f32,
            _ => 0.0,
        })
        .collect();
    assert_eq!(outs[0].data, want);
}

/// A Copy within one buffer reads the values from before it (the boxes overlap), an empty
/// box copies nothing, and a Load into an integer buffer checks what it loads.
#[test]
fn copies_within_a_buffer_empty_boxes_and_integer_loads() {
    let mut b = Builder::new("core");
    let i = b.input(&[2, 8]);
    let x = b.load_full(i, (0, 0));
    b.push(Instr::Copy { src: x, src_region: Region::new(vec![0, 0], vec![2, 6]), dst: x, dst_region: Region::new(vec![0, 2], vec![2, 6]) });
    b.push(Instr::Copy { src: x, src_region: Region::new(vec![1, 0], vec![0, 8]), dst: x, dst_region: Region::new(vec![0, 0], vec![0, 8]) });
    b.store_full(x);
    let data: Vec<f32> = (0..16).map(|v| v as f32).collect();
    let (outs, _) = run(&b.p, &[(vec![2, 8], data)]).unwrap();
    assert_eq!(outs[0].data, vec![0., 1., 0., 1., 2., 3., 4., 5., 8., 9., 8., 9., 10., 11., 12., 13.]);

    let mut b = Builder::new("core");
    let i = b.input(&[4]);
    b.p.inputs[i].dtype = DType::I64;
    let x = b.decl((0, 0), &[4]);
    b.p.buffers[x].dtype = DType::I64;
    b.push(Instr::Alloc { buf: x });
    b.push(Instr::Load { input: i, src: Region::full(&[4]), buf: x, dst: Region::full(&[4]) });
    b.store_full(x);
    b.p.outputs[0].dtype = DType::I64;
    assert_eq!(run(&b.p, &[(vec![4], vec![1., 2., 3., 4.])]).unwrap().0[0].data, vec![1., 2., 3., 4.]);
    let err = run(&b.p, &[(vec![4], vec![1., 2.5, 3., 4.])]).unwrap_err().to_string();
    assert!(err.contains("input 0") && err.contains("2.5"), "{err}");
}

/// Writers of one array with nothing reading it in between (a buffer gathered from parts, an
/// output stored shard by shard) may run together; they still take effect in program order,
/// so where two boxes overlap the later one wins.
#[test]
fn writers_of_one_array_take_effect_in_program_order() {
    let mut b = Builder::new("d1:1x4");
    let i = b.input(&[4, 4]);
    let x = b.load_full(i, (0, 0));
    let y = b.buf((0, 1), &[4, 4]);
    for r in 0..4 {
        // Row r of x into row 3 - r of y, then x's first column over y's column 1.
        b.push(Instr::Copy { src: x, src_region: Region::new(vec![r, 0], vec![1, 4]), dst: y, dst_region: Region::new(vec![3 - r, 0], vec![1, 4]) });
    }
    b.push(Instr::Copy { src: x, src_region: Region::new(vec![0, 0], vec![4, 1]), dst: y, dst_region: Region::new(vec![0, 1], vec![4, 1]) });
    let z = b.buf((0, 1), &[4, 4]);
    b.push(Instr::Kernel { op: KernelOp::Scale { factor: 2.0 }, inputs: vec![y], output: z });
    let o = b.output(&[4, 4]);
    for (buf, rows) in [(z, 0..3), (x, 2..4), (y, 3..4)] {
        let region = Region::new(vec![rows.start, 0], vec![rows.len(), 4]);
        b.push(Instr::Store { buf, src: region.clone(), output: o, dst: region });
    }
    let data: Vec<f32> = (0..16).map(|v| v as f32).collect();
    let (outs, _) = run(&b.p, &[(vec![4, 4], data)]).unwrap();
    let y_rows = [[12., 0., 14., 15.], [8., 4., 10., 11.], [4., 8., 6., 7.], [0., 12., 2., 3.]];
    let want: Vec<f32> = (0..4)
        .flat_map(|r| (0..4).map(move |c| match r {
            0 | 1 => 2.0 * y_rows[r][c],
            2 => (r * 4 + c) as f32,
            _ => y_rows[r][c],
        }))
        .collect();
    assert_eq!(outs[0].data, want);
}

#[test]
fn arrays_shared_by_copies_and_reshapes_are_copied_on_write() {
    // y is a whole copy of x on another core and z a reshape of y: the functional pass shares
    // one array among them until one is written.
    let mut b = Builder::new("d1:1x3");
    let x = b.buf((0, 0), &[2, 3]);
    b.push(Instr::Fill { buf: x, value: 1.0 });
    let y = b.buf((0, 2), &[2, 3]);
    b.push(Instr::Copy { src: x, src_region: Region::full(&[2, 3]), dst: y, dst_region: Region::full(&[2, 3]) });
    let z = b.buf((0, 2), &[3, 2]);
    b.push(Instr::Kernel { op: KernelOp::Reshape, inputs: vec![y], output: z });
    b.push(Instr::Fill { buf: x, value: 2.0 });
    // y in place: y = 3 y (an input that is the output reads the old contents).
    b.push(Instr::Kernel { op: KernelOp::Scale { factor: 3.0 }, inputs: vec![y], output: y });
    let w = b.buf((0, 1), &[2, 3]);
    b.push(Instr::Copy { src: y, src_region: Region::full(&[2, 3]), dst: w, dst_region: Region::full(&[2, 3]) });
    // A partial write into w: its own array, y keeps its values.
    b.push(Instr::Copy { src: x, src_region: Region::new(vec![0, 0], vec![1, 3]), dst: w, dst_region: Region::new(vec![1, 0], vec![1, 3]) });
    for buf in [x, y, z, w] {
        b.store_full(buf);
    }
    let (outs, _) = run(&b.p, &[]).unwrap();
    let values: Vec<Vec<f32>> = outs.into_iter().map(|o| o.data).collect();
    assert_eq!(values, vec![vec![2.0; 6], vec![3.0; 6], vec![1.0; 6], vec![3., 3., 3., 2., 2., 2.]]);
}

/// Columns of [`reuse_program`]'s rows: wide enough that its levels run in parallel.
const REUSE_COLS: usize = 256;

/// A Program whose buffers' arrays the functional pass reuses in several ways: arrays
/// shared by a whole copy and a reshape until one is written (then copied on write, or
/// written in place), a buffer gathered from two copies in one level, buffers zeroed because
/// only part of them is written (one's array left holding 9s by the run before), and a copy
/// of an integer input (checked: a value beyond 2^24 fails the run). Rows of [`REUSE_COLS`].
fn reuse_program() -> Program {
    let (c, row) = (REUSE_COLS, |r: usize| Region::new(vec![r, 0], vec![1, REUSE_COLS]));
    let mut b = Builder::new("d1:1x2");
    let x = b.input(&[2, c]);
    let n = b.input(&[2]);
    b.p.inputs[n].dtype = DType::I64;
    let a = b.load_full(x, (0, 0));
    // y: row 1 from row 0 of a, row 0 zero.
    let y = b.buf((0, 1), &[2, c]);
    b.push(Instr::Copy { src: a, src_region: row(0), dst: y, dst_region: row(1) });
    // w shares y's array, z a reshape of w; then y is scaled in place, w written in part.
    let w = b.buf((0, 0), &[2, c]);
    b.push(Instr::Copy { src: y, src_region: Region::full(&[2, c]), dst: w, dst_region: Region::full(&[2, c]) });
    let z = b.buf((0, 0), &[c, 2]);
    b.push(Instr::Kernel { op: KernelOp::Reshape, inputs: vec![w], output: z });
    b.push(Instr::Kernel { op: KernelOp::Scale { factor: 3.0 }, inputs: vec![y], output: y });
    b.push(Instr::Copy { src: a, src_region: row(1), dst: w, dst_region: row(0) });
    let ids = b.decl((0, 1), &[2]);
    b.p.buffers[ids].dtype = DType::I64;
    b.push(Instr::Alloc { buf: ids });
    b.push(Instr::Load { input: n, src: Region::full(&[2]), buf: ids, dst: Region::full(&[2]) });
    // u: row 0 from row 1 of a, row 1 zero; the run leaves u's array holding 9s, and the
    // next run's u must still start from zeros.
    let u = b.buf((0, 1), &[2, c]);
    b.push(Instr::Copy { src: a, src_region: row(1), dst: u, dst_region: row(0) });
    // v: a's rows swapped, by two copies that run as one task.
    let v = b.buf((0, 1), &[2, c]);
    b.push(Instr::Copy { src: a, src_region: row(0), dst: v, dst_region: row(1) });
    b.push(Instr::Copy { src: a, src_region: row(1), dst: v, dst_region: row(0) });
    for buf in [a, y, w, z, ids, u, v] {
        let o = b.store_full(buf);
        b.p.outputs[o].dtype = b.p.buffers[buf].dtype;
    }
    b.push(Instr::Fill { buf: u, value: 9.0 });
    b.p
}

#[test]
fn runs_of_one_program_reuse_its_arrays_and_give_each_run_its_own_values() {
    let c = REUSE_COLS;
    let p = reuse_program();
    let valid = ValidProgram::new(p.clone()).unwrap();
    let inputs = |seed: usize, id: f32| vec![(vec![2, c], data(2 * c, seed)), (vec![2], vec![id, 1.0])];
    let fresh = |ins: &[(Vec<usize>, Vec<f32>)]| -> Vec<Vec<u32>> { run(&p, ins).unwrap().0.iter().map(|o| bits(&o.data)).collect() };
    let again = |ins: &[(Vec<usize>, Vec<f32>)]| -> Result<Vec<Vec<u32>>, RuntimeError> {
        let v: Vec<(&[usize], &[f32])> = ins.iter().map(|(s, d)| (s.as_slice(), d.as_slice())).collect();
        Ok(SimMesh::new().values(&valid, &v)?.0.iter().map(|o| bits(&o.data)).collect())
    };
    let (one, two) = (inputs(1, 3.0), inputs(2, 5.0));
    let (want1, want2) = (fresh(&one), fresh(&two));
    assert_ne!(want1, want2);
    // The values of the first run, by hand: y = 3 [0, x0], w = [x1, x0], z = w before its
    // write, u = [x1, 0], v = [x1, x0].
    let x = data(2 * c, 1);
    let (x0, x1, zero) = (&x[..c], &x[c..], vec![0.0; c]);
    let y: Vec<f32> = zero.iter().chain(x0).map(|v| 3.0 * v).collect();
    let w: Vec<f32> = x1.iter().chain(x0).copied().collect();
    let z: Vec<f32> = zero.iter().chain(x0).copied().collect();
    let u: Vec<f32> = x1.iter().chain(&zero).copied().collect();
    assert_eq!(want1, vec![bits(&x), bits(&y), bits(&w), bits(&z), bits(&[3.0, 1.0]), bits(&u), bits(&w)]);
    for ins in [&one, &two, &one, &two] {
        assert_eq!(again(ins).unwrap(), fresh(ins));
    }
    // A failed run does not spoil the next ones.
    let bad = inputs(1, 16_777_217.0);
    assert!(again(&bad).unwrap_err().message.contains("2^24"), "{:?}", again(&bad));
    assert_eq!(again(&two).unwrap(), want2);
    // Runs at the same time: one takes the kept arrays, the other makes its own.
    let (one, two, again) = (&one, &two, &again);
    std::thread::scope(|s| {
        let runs: Vec<_> = (0..4).map(|k| s.spawn(move || (k, again(if k % 2 == 0 { one } else { two }).unwrap()))).collect();
        for r in runs {
            let (k, got) = r.join().unwrap();
            assert_eq!(got, if k % 2 == 0 { want1.clone() } else { want2.clone() });
        }
    });
}

#[test]
fn an_integer_load_checks_only_the_values_it_loads() {
    // h (f32, 0.5s) is freed; after more than a window of instructions, ids (i64, the same
    // size) takes its array and is filled by two half Loads: the half not yet loaded still
    // holds 0.5s when the first Load's values are checked.
    let mut b = Builder::new("core");
    let n = b.input(&[2, 3]);
    b.p.inputs[n].dtype = DType::I64;
    let h = b.buf((0, 0), &[2, 3]);
    b.push(Instr::Fill { buf: h, value: 0.5 });
    b.push(Instr::Free { buf: h });
    let pad = b.buf((0, 0), &[1]);
    for _ in 0..5000 {
        b.push(Instr::Fill { buf: pad, value: 1.0 });
    }
    let ids = b.decl((0, 0), &[2, 3]);
    b.p.buffers[ids].dtype = DType::I64;
    b.push(Instr::Alloc { buf: ids });
    for r in 0..2 {
        let half = Region::new(vec![r, 0], vec![1, 3]);
        b.push(Instr::Load { input: n, src: half.clone(), buf: ids, dst: half });
    }
    let o = b.store_full(ids);
    b.p.outputs[o].dtype = DType::I64;
    let ints: Vec<f32> = (0..6).map(|i| i as f32).collect();
    let valid = ValidProgram::new(b.p.clone()).unwrap();
    for _ in 0..2 {
        let (outs, _) = SimMesh::new().values(&valid, &[(&[2, 3], &ints)]).unwrap();
        assert_eq!(outs[0].data, ints);
    }
    let mut big = ints.clone();
    big[4] = 16_777_217.0;
    let m = SimMesh::new().values(&valid, &[(&[2, 3], &big)]).unwrap_err().message;
    assert!(m.contains("input 0") && m.contains("2^24"), "{m}");
}

#[test]
fn execute_checks_inputs() {
    let p = summa_program();
    let m = run(&p, &summa_inputs()[..1]).unwrap_err().message;
    assert!(m.contains("takes 2 input"), "{m}");
    let mut ins = summa_inputs();
    ins[1].0 = vec![4, 16];
    let m = run(&p, &ins).unwrap_err().message;
    assert!(m.starts_with("input 1: expected shape [8, 8]"), "{m}");
    let mut ins = summa_inputs();
    ins[0].1.pop();
    let m = run(&p, &ins).unwrap_err().message;
    assert!(
        m.starts_with("input 0") && m.contains("needs 64 values"),
        "{m}"
    );
    // An invalid program is rejected before it runs.
    let mut b = Builder::new("d1");
    b.buf((17, 10), &[4]);
    assert!(run(&b.p, &[]).unwrap_err().message.contains("disabled"));
}

/// A copy of `bytes` f32 values from (0,0) to `to` on a d1.
fn one_copy(to: (u32, u32), elems: usize) -> Profile {
    let mut b = Builder::new("d1");
    let x = b.buf((0, 0), &[elems]);
    let y = b.buf(to, &[elems]);
    b.push(Instr::Copy {
        src: x,
        src_region: Region::full(&[elems]),
        dst: y,
        dst_region: Region::full(&[elems]),
    });
    run(&b.p, &[]).unwrap().1
}

fn one_matmul(n: usize) -> Profile {
    let mut b = Builder::new("core");
    let a = b.buf((0, 0), &[n, n]);
    let w = b.buf((0, 0), &[n, n]);
    let o = b.buf((0, 0), &[n, n]);
    b.push(Instr::Kernel {
        op: KernelOp::MatMul { accumulate: false, epilogue: vec![] },
        inputs: vec![a, w],
        output: o,
    });
    run(&b.p, &[]).unwrap().1
}

#[test]
fn timing_grows_with_distance_size_and_work() {
    let near = one_copy((0, 1), 1024);
    let far = one_copy((15, 15), 1024);
    assert!(near.simulated_seconds > 0.0);
    assert!(far.simulated_seconds > near.simulated_seconds);
    assert!(one_copy((0, 1), 4096).simulated_seconds > near.simulated_seconds);
    assert_eq!(far.mesh_bytes, 4096 * 30);

    let small = one_matmul(16);
    let big = one_matmul(64);
    assert!(small.simulated_seconds > 0.0);
    assert!(big.simulated_seconds > small.simulated_seconds);
    assert_eq!(big.flops, 2 * 64 * 64 * 64);
    // Compute-bound: 2 n^3 / (32 FLOP/cycle * 2 GHz).
    let t = Target::preset("core").unwrap();
    let want = (2.0 * 64f64.powi(3)) / (t.fp32_flops_per_cycle * t.clock_hz);
    assert!(
        (big.simulated_seconds - want).abs() < 1e-15,
        "{} vs {want}",
        big.simulated_seconds
    );
    assert_eq!(big.busy_seconds_per_core[0].1, big.simulated_seconds);
}

#[test]
fn copies_across_chip_edges_pay_the_edge_latency() {
    let mut b = Builder::new("tile");
    let x = b.buf((0, 0), &[16]);
    let y = b.buf((0, 19), &[16]);
    let z = b.buf((0, 20), &[16]);
    b.push(Instr::Copy {
        src: x,
        src_region: Region::full(&[16]),
        dst: y,
        dst_region: Region::full(&[16]),
    });
    let within = run(&b.p, &[]).unwrap().1.simulated_seconds;
    b.p.instrs.pop();
    b.push(Instr::Copy {
        src: x,
        src_region: Region::full(&[16]),
        dst: z,
        dst_region: Region::full(&[16]),
    });
    let across = run(&b.p, &[]).unwrap().1.simulated_seconds;
    let t = Target::preset("tile").unwrap();
    assert!(
        across - within >= t.chip_edge_latency_s * 0.999,
        "{within} {across}"
    );
}

#[test]
fn host_transfers_use_the_dip_channel() {
    let mut b = Builder::new("core");
    let i = b.input(&[1024]);
    let x = b.load_full(i, (0, 0));
    b.store_full(x);
    let ins = vec![(vec![1024], data(1024, 9))];
    let (outs, prof) = run(&b.p, &ins).unwrap();
    assert_eq!(outs[0].data, ins[0].1);
    assert_eq!(prof.host_bytes, 2 * 4096);
    let t = Target::preset("core").unwrap();
    // Store waits for the Load to land: two serialisations plus two latencies.
    let want = 2.0 * (4096.0 / t.dip_hbm_bytes_per_s + t.host_latency_s);
    assert!((prof.simulated_seconds - want).abs() < 1e-15);
    let trace = prof.chrome_trace_json();
    assert!(
        trace.contains("\"dip 0\"") && trace.contains("\"Load\""),
        "{trace}"
    );
}

/// A store waits for its data (a long matmul); a load after it in program order that is
/// ready at once runs on the DIP channel in the meantime instead of queueing behind the store.
#[test]
fn a_ready_load_runs_on_the_dip_before_a_store_still_waiting_for_its_data() {
    let mut b = Builder::new("core");
    let (ia, ib, iz) = (b.input(&[128, 128]), b.input(&[128, 128]), b.input(&[256]));
    let a = b.load_full(ia, (0, 0));
    let w = b.load_full(ib, (0, 0));
    let c = b.buf((0, 0), &[128, 128]);
    b.push(Instr::Kernel { op: KernelOp::MatMul { accumulate: false, epilogue: vec![] }, inputs: vec![a, w], output: c });
    b.store_full(c);
    let z = b.load_full(iz, (0, 0));
    b.store_full(z);
    let ins = vec![(vec![128, 128], data(128 * 128, 1)), (vec![128, 128], data(128 * 128, 2)), (vec![256], data(256, 3))];
    let (outs, prof) = run(&b.p, &ins).unwrap();
    assert_eq!(outs[1].data, ins[2].1);
    let span = |name: &str, nth: usize| {
        let e = prof.timeline.iter().filter(|e| e.name == name).nth(nth).expect("event");
        (e.start_s, e.end_s)
    };
    let (kernel, store_c, load_z) = (span("MatMul", 0), span("Store", 0), span("Load", 2));
    // The matmul runs for microseconds; z's load (1 KiB) starts when the channel frees after
    // the operands' loads, long before c's store can begin.
    assert!(kernel.1 - kernel.0 > 1e-6, "{kernel:?}");
    assert!(load_z.0 < kernel.1 && load_z.1 <= store_c.0, "load {load_z:?}, kernel {kernel:?}, store {store_c:?}");
}

/// Hundreds of small stores, each ready a little after the last (a layer's saved activations,
/// one shard per core), leave as many idle gaps on the DIP channel; a load ready at once
/// still runs in the idle time before them, not after the last. (With the 256 gaps a channel
/// used to remember, the first ones were forgotten and the load queued behind every store:
/// GPT-2 124M's training forward on tile took 3.725 ms instead of 3.560.)
#[test]
fn a_ready_load_uses_the_dip_time_before_many_small_stores() {
    let mut b = Builder::new("core");
    let iz = b.input(&[256]);
    // 1 MiB filled at store bandwidth: about 3.9 us before the first small store is ready.
    let big = b.buf((0, 0), &[262_144]);
    b.push(Instr::Fill { buf: big, value: 1.0 });
    for _ in 0..600 {
        let s = b.buf((0, 0), &[16]);
        b.push(Instr::Fill { buf: s, value: 2.0 });
        b.store_full(s);
    }
    let z = b.load_full(iz, (0, 0));
    b.store_full(z);
    let ins = vec![(vec![256], data(256, 3))];
    let (outs, prof) = run(&b.p, &ins).unwrap();
    assert_eq!(outs.last().unwrap().data, ins[0].1);
    let first = |name: &str| prof.timeline.iter().find(|e| e.name == name).map(|e| (e.start_s, e.end_s)).expect("event");
    let (fill, store) = (first("Fill"), first("Store"));
    let load = first("Load");
    assert!(store.0 >= fill.1 && fill.1 > 3e-6, "fill {fill:?}, first store {store:?}");
    assert!(load.0 < store.0, "load {load:?} starts after the first store {store:?}");
}

/// The same on the mesh: hundreds of small copies into core (0, 1), each ready a little after
/// the last, leave as many gaps on its ejection port; a copy from another core that is ready
/// at once still runs before them. (With the 256 gaps a port used to remember, it queued
/// behind them all: GPT-2 (1000 words, seq 128)'s training backward on tile took 2.405 ms
/// instead of 2.262.)
#[test]
fn a_ready_copy_uses_the_port_time_before_many_small_copies() {
    let mut b = Builder::new("d1:2x2");
    let big = b.buf((0, 0), &[262_144]);
    b.push(Instr::Fill { buf: big, value: 1.0 });
    // Between two small copies core (0, 0) fills 1 KiB (3.8 ns), longer than a copy (0.5 ns).
    let pause = b.buf((0, 0), &[256]);
    for _ in 0..600 {
        let (s, d) = (b.buf((0, 0), &[16]), b.buf((0, 1), &[16]));
        b.push(Instr::Fill { buf: pause, value: 0.0 });
        b.push(Instr::Fill { buf: s, value: 2.0 });
        let full = Region::full(&[16]);
        b.push(Instr::Copy { src: s, src_region: full.clone(), dst: d, dst_region: full });
    }
    let (z, d) = (b.buf((1, 1), &[16]), b.buf((0, 1), &[16]));
    b.push(Instr::Fill { buf: z, value: 3.0 });
    let full = Region::full(&[16]);
    b.push(Instr::Copy { src: z, src_region: full.clone(), dst: d, dst_region: full });
    b.store_full(d);
    let (outs, prof) = run(&b.p, &[]).unwrap();
    assert_eq!(outs[0].data, vec![3.0; 16]);
    let copies: Vec<(f64, f64)> = prof.timeline.iter().filter(|e| e.name == "Copy" && matches!(e.unit, dojo_runtime::sim::Unit::Dma(_))).map(|e| (e.start_s, e.end_s)).collect();
    let (first, last) = (copies[0], copies[copies.len() - 1]);
    assert!(first.0 > 3e-6, "first small copy {first:?}");
    assert!(last.0 < first.0, "the ready copy {last:?} starts after the first small one {first:?}");
}

#[test]
fn host_copy_passes_an_input_through() {
    let mut b = Builder::new("core");
    let i = b.input(&[3]);
    let o = b.output(&[3]);
    b.push(Instr::HostCopy {
        input: i,
        output: o,
    });
    let (outs, prof) = run(&b.p, &[(vec![3], vec![1.0, 2.0, 3.0])]).unwrap();
    assert_eq!(outs[0].data, vec![1.0, 2.0, 3.0]);
    assert_eq!(prof.simulated_seconds, 0.0);
    assert_eq!(prof.cores_used, 0);
}

#[test]
fn a_buffer_is_zeroed_unless_its_parts_tile_it_before_it_is_read() {
    // Each buffer is allocated again after holding 7s, so its new array comes from the pool
    // with those values: only a buffer whose written parts tile it may keep them unzeroed.
    let mut b = Builder::new("d1:1x2");
    let x = b.buf((0, 0), &[2, 3]);
    b.push(Instr::Fill { buf: x, value: 1.0 });
    let row = |r: usize| Region::new(vec![r, 0], vec![1, 3]);
    let mut case = |parts: &[(usize, usize)]| {
        let y = b.buf((0, 1), &[2, 3]);
        b.push(Instr::Fill { buf: y, value: 7.0 });
        b.push(Instr::Free { buf: y });
        b.push(Instr::Alloc { buf: y });
        for &(from, to) in parts {
            b.push(Instr::Copy { src: x, src_region: row(from), dst: y, dst_region: row(to) });
        }
        b.store_full(y);
    };
    case(&[(0, 1), (1, 0)]); // the two rows: tiled
    case(&[(0, 0)]); // one row: row 1 stays zero
    case(&[(0, 0), (1, 0)]); // row 0 twice: as many elements as the buffer, row 1 still zero
    let (outs, _) = run(&b.p, &[]).unwrap();
    let values: Vec<Vec<f32>> = outs.into_iter().map(|o| o.data).collect();
    assert_eq!(values, vec![vec![1.0; 6], vec![1., 1., 1., 0., 0., 0.], vec![1., 1., 1., 0., 0., 0.]]);
}

#[test]
fn fused_kernels_broadcast_operands_along_any_dim() {
    // x [2, 3] times a per-row s [2, 1] (broadcast along the innermost dim) plus a per-column
    // c [3], in one fused kernel.
    let mut b = Builder::new("core");
    let x = b.buf((0, 0), &[2, 3]);
    b.push(Instr::Fill { buf: x, value: 2.0 });
    let s = b.buf((0, 0), &[2, 1]);
    b.push(Instr::Kernel { op: KernelOp::Iota { dim: 0, start: 1 }, inputs: vec![], output: s });
    let c = b.buf((0, 0), &[3]);
    b.push(Instr::Kernel { op: KernelOp::Iota { dim: 0, start: 0 }, inputs: vec![], output: c });
    let y = b.buf((0, 0), &[2, 3]);
    let steps = vec![
        FusedStep { f: FusedFn::Binary(BinaryOp::Mul), args: vec![FusedArg::Input(0), FusedArg::Input(1)] },
        FusedStep { f: FusedFn::Binary(BinaryOp::Add), args: vec![FusedArg::Step(0), FusedArg::Input(2)] },
    ];
    b.push(Instr::Kernel { op: KernelOp::Fused { steps }, inputs: vec![x, s, c], output: y });
    b.store_full(y);
    let (outs, _) = run(&b.p, &[]).unwrap();
    assert_eq!(outs[0].data, vec![2., 3., 4., 4., 5., 6.]);
}

/// A matmul with an epilogue (bias, residual, gelu-like chain) gives the bits of the matmul
/// followed by the same steps as a separate `Fused` kernel, accumulating or not, for
/// shapes that exercise the register tiles and the fused kernel's chunks; and its profile
/// has one kernel where the separate form has two, no longer than both together but longer
/// than the matmul alone (the epilogue's FLOPs count).
#[test]
fn matmul_epilogue_equals_matmul_then_fused_bit_for_bit() {
    use FusedArg::{Const, Input, Step};
    let bin = |op, a, b| FusedStep { f: FusedFn::Binary(op), args: vec![a, b] };
    let un = |op, a| FusedStep { f: FusedFn::Unary(op), args: vec![a] };
    // x0 + bias; * 0.5; + residual; tanh; relu(t2) * t3
    let steps = vec![
        bin(BinaryOp::Add, Input(0), Input(1)),
        bin(BinaryOp::Mul, Step(0), Const(0.5)),
        bin(BinaryOp::Add, Step(1), Input(2)),
        un(UnaryOp::Tanh, Step(2)),
        un(UnaryOp::Relu, Step(2)),
        bin(BinaryOp::Mul, Step(4), Step(3)),
    ];
    let mut nonzero = false;
    for &(m, k, n) in &[(1, 1, 1), (5, 7, 8), (9, 33, 17), (23, 40, 45)] {
        for accumulate in [false, true] {
            let (a, b) = (data(m * k, m + n), data(k * n, k + 1));
            let (bias, res, init) = (data(n, 3), data(m * n, 4), data(m * n, 5));
            let ins = [(vec![m, k], a), (vec![k, n], b), (vec![n], bias), (vec![m, n], res), (vec![m, n], init)];
            // One program per form: the output starts as `init` (an accumulating matmul adds to it).
            let program = |fused_in_matmul: bool| {
                let mut bld = Builder::new("core");
                let bufs: Vec<BufId> = ins.iter().map(|(s, _)| bld.input(s)).collect::<Vec<_>>().into_iter().map(|i| bld.load_full(i, (0, 0))).collect();
                let out = bld.buf((0, 0), &[m, n]);
                bld.push(Instr::Copy { src: bufs[4], src_region: Region::full(&[m, n]), dst: out, dst_region: Region::full(&[m, n]) });
                if fused_in_matmul {
                    let op = KernelOp::MatMul { accumulate, epilogue: steps.clone() };
                    bld.push(Instr::Kernel { op, inputs: vec![bufs[0], bufs[1], bufs[2], bufs[3]], output: out });
                    bld.store_full(out);
                } else {
                    bld.push(Instr::Kernel { op: KernelOp::MatMul { accumulate, epilogue: vec![] }, inputs: vec![bufs[0], bufs[1]], output: out });
                    let y = bld.buf((0, 0), &[m, n]);
                    let op = KernelOp::Fused { steps: steps.clone() };
                    bld.push(Instr::Kernel { op, inputs: vec![out, bufs[2], bufs[3]], output: y });
                    bld.store_full(y);
                }
                bld.p
            };
            let (fused, fused_profile) = run(&program(true), &ins).expect("epilogue runs");
            let (separate, separate_profile) = run(&program(false), &ins).expect("separate runs");
            assert_eq!(bits(&fused[0].data), bits(&separate[0].data), "{m}x{k}x{n} accumulate={accumulate}");
            nonzero |= fused[0].data.iter().any(|&x| x != 0.0);
            let kernels = |p: &Profile| p.timeline.iter().filter(|e| e.name.starts_with("MatMul") || e.name.starts_with("Fused")).map(|e| e.end_s - e.start_s).collect::<Vec<f64>>();
            let (kf, ks) = (kernels(&fused_profile), kernels(&separate_profile));
            assert_eq!((kf.len(), ks.len()), (1, 2), "{m}x{k}x{n}");
            // Never longer than the two kernels (shorter when the separate one is SRAM-bound).
            assert!(kf[0] <= ks.iter().sum::<f64>() * (1.0 + 1e-12), "{m}x{k}x{n}: epilogue {kf:?} vs separate {ks:?}");
            assert!(kf[0] > ks[0], "{m}x{k}x{n}: the epilogue's compute is counted: {kf:?} vs {ks:?}");
        }
    }
    assert!(nonzero);
}

/// A Store whose source box's first dim merges the output box's leading dims (a value stored
/// into an output viewed in another shape): a `[2, 4]` box at row 1, column 1 of a `[4, 6]`
/// buffer lands in `[1, 2, 4]` at sample 1 of a `[2, 3, 4]` output, in row-major order. A box
/// of the same count but another trailing shape is rejected.
#[test]
fn a_store_may_split_its_box_first_dim_into_the_outputs_leading_dims() {
    let mut b = Builder::new("d1:4x4");
    let x = b.input(&[4, 6]);
    let o = b.output(&[2, 3, 4]);
    let buf = b.buf((0, 0), &[4, 6]);
    b.push(Instr::Load { input: x, src: Region::full(&[4, 6]), buf, dst: Region::full(&[4, 6]) });
    let src = Region::new(vec![1, 1], vec![2, 4]);
    b.push(Instr::Store { buf, src: src.clone(), output: o, dst: Region::new(vec![1, 0, 0], vec![1, 2, 4]) });
    let p = b.p;
    let input = data(24, 7);
    let (outs, _) = run(&p, &[(vec![4, 6], input.clone())]).unwrap();
    for r in 0..2 {
        for c in 0..4 {
            assert_eq!(outs[0].data[12 + r * 4 + c].to_bits(), input[(1 + r) * 6 + 1 + c].to_bits(), "row {r} col {c}");
        }
    }
    let mut bad = p.clone();
    if let Some(Instr::Store { dst, .. }) = bad.instrs.last_mut() {
        *dst = Region::new(vec![0, 0, 0], vec![2, 2, 2]);
    }
    let err = bad.validate().unwrap_err().to_string();
    assert!(err.contains("box sizes"), "{err}");
}
