//! Helpers shared by the runtime's integration tests: a tiny Program builder and
//! deterministic test data.
#![allow(dead_code)]

use dojo_runtime::*;

/// Builds a Program one declaration / instruction at a time.
pub struct Builder {
    pub p: Program,
}

impl Builder {
    pub fn new(mesh: &str) -> Builder {
        Builder {
            p: Program::new(Target::preset(mesh).expect("preset")),
        }
    }

    pub fn input(&mut self, shape: &[usize]) -> usize {
        self.p.inputs.push(TensorDecl {
            shape: shape.to_vec(),
            dtype: DType::F32,
        });
        self.p.inputs.len() - 1
    }

    pub fn output(&mut self, shape: &[usize]) -> usize {
        self.p.outputs.push(TensorDecl {
            shape: shape.to_vec(),
            dtype: DType::F32,
        });
        self.p.outputs.len() - 1
    }

    /// Declares an f32 buffer on `core` without allocating it.
    pub fn decl(&mut self, core: (u32, u32), shape: &[usize]) -> BufId {
        self.p.buffers.push(BufferDecl {
            core: CoreId::new(core.0, core.1),
            shape: shape.to_vec(),
            dtype: DType::F32,
        });
        self.p.buffers.len() - 1
    }

    /// Declares and allocates an f32 buffer on `core`.
    pub fn buf(&mut self, core: (u32, u32), shape: &[usize]) -> BufId {
        let b = self.decl(core, shape);
        self.push(Instr::Alloc { buf: b });
        b
    }

    pub fn push(&mut self, i: Instr) {
        self.p.instrs.push(i);
    }

    /// Loads the whole of `input` into a new buffer on `core`.
    pub fn load_full(&mut self, input: usize, core: (u32, u32)) -> BufId {
        let shape = self.p.inputs[input].shape.clone();
        let b = self.buf(core, &shape);
        self.push(Instr::Load {
            input,
            src: Region::full(&shape),
            buf: b,
            dst: Region::full(&shape),
        });
        b
    }

    /// Stores the whole of `buf` into a new output of the same shape.
    pub fn store_full(&mut self, buf: BufId) -> usize {
        let shape = self.p.buffers[buf].shape.clone();
        let o = self.output(&shape);
        self.push(Instr::Store {
            buf,
            src: Region::full(&shape),
            output: o,
            dst: Region::full(&shape),
        });
        o
    }
}

/// Deterministic values in [-1, 1), exactly representable.
pub fn data(n: usize, seed: usize) -> Vec<f32> {
    (0..n)
        .map(|i| ((i * 7919 + seed * 104_729) % 257) as f32 / 128.0 - 1.0)
        .collect()
}

/// Reference `a @ b` for row-major `m x k` and `k x n`, summing in k order from 0.0.
pub fn matmul_ref(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; m * n];
    for i in 0..m {
        for j in 0..n {
            let mut acc = 0.0f32;
            for p in 0..k {
                acc += a[i * k + p] * b[p * n + j];
            }
            out[i * n + j] = acc;
        }
    }
    out
}

pub fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Runs `p` on the simulator.
pub fn run(
    p: &Program,
    inputs: &[(Vec<usize>, Vec<f32>)],
) -> Result<(Vec<HostTensor>, Profile), RuntimeError> {
    let views: Vec<(&[usize], &[f32])> = inputs
        .iter()
        .map(|(s, d)| (s.as_slice(), d.as_slice()))
        .collect();
    SimMesh::new().execute(p, &views)
}

/// Runs one kernel on a single core: loads each input, runs `op`, stores the output.
pub fn run_kernel(op: KernelOp, ins: &[(Vec<usize>, Vec<f32>)], out_shape: &[usize]) -> Vec<f32> {
    let mut b = Builder::new("core");
    let mut bufs = Vec::new();
    for (shape, _) in ins {
        let i = b.input(shape);
        bufs.push(b.load_full(i, (0, 0)));
    }
    let out = b.buf((0, 0), out_shape);
    b.push(Instr::Kernel {
        op,
        inputs: bufs,
        output: out,
    });
    b.store_full(out);
    let (outs, _) = run(&b.p, ins).expect("kernel runs");
    outs[0].data.clone()
}
