//! The Program the machine executes, its JSON form, and static validation.
//!
//! A [`Program`] is self-contained: the [`Target`] it was compiled for, the host tensors it
//! reads and writes, the local arrays ([`BufferDecl`]) it places in core SRAM, and a flat
//! list of [`Instr`]uctions run in order. Semantics of each instruction are documented on the
//! enum; [`Program::validate`] checks everything that can be checked without data and
//! reports the instruction index, buffer and core of the first problem.
//!
//! Element types: the simulator computes every value in `f32`. `Bool` is stored as 0.0/1.0
//! and `I64` values are carried as `f32` (exact up to 2^24). The dtype still decides SRAM and
//! traffic bytes: 4 B per `F32` element, 1 B per `Bool`, 8 B per `I64`.
//!
//! JSON: `serde_json` of a Program is deterministic (only `Vec`s, no maps), so equal Programs
//! serialise to identical bytes. `f32` attributes (`Fill::value`, `Scale::factor`) that are
//! not finite are written as the strings `"nan"`, `"inf"` and `"-inf"`.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::cfloat::{Format, MAX_BIAS};
use crate::error::{thousands, RuntimeError};
use crate::shape::{broadcasts_to, merged_lead, numel, show};
use crate::target::{CoreId, Target};

/// The Program format this runtime reads and writes.
pub const FORMAT_VERSION: u32 = 1;

/// Index into [`Program::buffers`].
pub type BufId = usize;

/// Element type of a tensor or buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum DType {
    /// 32-bit float (4 B).
    F32,
    /// Boolean, simulated as 0.0 / 1.0 (1 B).
    Bool,
    /// 64-bit integer, simulated as an `f32` value (8 B).
    I64,
    /// 32-bit integer, simulated as an `f32` value (4 B).
    I32,
    /// bfloat16 (2 B), carried as its exact `f32` value.
    BF16,
    /// CFloat8_1_4_3 (1 B), carried as its exact `f32` value; the bias is its scale's.
    Cf8_143,
    /// CFloat8_1_5_2 (1 B).
    Cf8_152,
    /// Signed CFloat16 (2 B).
    Cf16Shp,
    /// Unsigned CFloat16 (2 B).
    Cf16Uhp,
}

impl DType {
    /// Whether values are integers (carried as `f32`, exact below 2^24: the simulator checks).
    pub fn is_int(self) -> bool {
        matches!(self, DType::I64 | DType::I32)
    }

    /// Bytes one element occupies in SRAM and on the wire.
    pub fn size_bytes(self) -> u64 {
        match self {
            DType::F32 => 4,
            DType::Bool | DType::Cf8_143 | DType::Cf8_152 => 1,
            DType::I64 => 8,
            DType::I32 => 4,
            DType::BF16 | DType::Cf16Shp | DType::Cf16Uhp => 2,
        }
    }

    /// The storage format of a low-precision float dtype (bf16 and the CFloats), which only
    /// a [`KernelOp::Convert`] writes; `None` for `F32`, `Bool` and the integers.
    pub fn storage_format(self) -> Option<Format> {
        match self {
            DType::BF16 => Some(Format::Bf16),
            DType::Cf8_143 => Some(Format::Cf8_143),
            DType::Cf8_152 => Some(Format::Cf8_152),
            DType::Cf16Shp => Some(Format::Cf16Shp),
            DType::Cf16Uhp => Some(Format::Cf16Uhp),
            DType::F32 | DType::Bool | DType::I64 | DType::I32 => None,
        }
    }

    /// Whether values are floats (`F32` or a storage format).
    pub fn is_float(self) -> bool {
        self == DType::F32 || self.storage_format().is_some()
    }
}

/// The conversion parameters of one low-precision tensor: every [`KernelOp::Convert`] naming
/// it writes its format with its bias (one bias per tensor, however many cores hold shards).
/// `bias` is the compile-time choice; a run may override it (`SimMesh::with_scale_biases`),
/// e.g. from an amax history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScaleDecl {
    /// The tensor, for messages (e.g. the compiler op it feeds).
    pub name: String,
    /// The storage dtype (bf16 or a CFloat).
    pub dtype: DType,
    /// Exponent bias, `0..=63` (127 for bf16).
    pub bias: u8,
    /// The host input this tensor is a view of, if any: its bias can be chosen from that
    /// input's values before the run (weights); otherwise from earlier runs (activations).
    #[serde(default)]
    pub input: Option<usize>,
}

/// A host tensor the Program reads (input) or writes (output).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TensorDecl {
    /// Dimensions, row-major.
    pub shape: Vec<usize>,
    /// Element type.
    pub dtype: DType,
}

/// A local array in one core's SRAM (row-major). It occupies SRAM from its `Alloc` to its
/// `Free` (or the end of the Program).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BufferDecl {
    /// The core whose SRAM holds it; must be enabled in the target.
    pub core: CoreId,
    /// Dimensions, row-major.
    pub shape: Vec<usize>,
    /// Element type.
    pub dtype: DType,
}

impl BufferDecl {
    /// SRAM bytes, or `None` if the size overflows `u64`.
    pub fn size_bytes(&self) -> Option<u64> {
        let n = numel(&self.shape)?;
        (n as u64).checked_mul(self.dtype.size_bytes())
    }
}

/// An axis-aligned box of a tensor or buffer: `offsets[d] .. offsets[d] + sizes[d]` on each
/// dimension. Its rank must equal the rank of the array it indexes. Elements of a box are
/// visited in row-major order of the box.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Region {
    /// Start index on each dimension.
    pub offsets: Vec<usize>,
    /// Extent on each dimension.
    pub sizes: Vec<usize>,
}

impl Region {
    /// The box `offsets .. offsets + sizes`.
    pub fn new(offsets: Vec<usize>, sizes: Vec<usize>) -> Region {
        Region { offsets, sizes }
    }

    /// The whole of a `shape` array.
    pub fn full(shape: &[usize]) -> Region {
        Region {
            offsets: vec![0; shape.len()],
            sizes: shape.to_vec(),
        }
    }

    /// Number of elements in the box (saturating).
    pub fn elements(&self) -> usize {
        numel(&self.sizes).unwrap_or(usize::MAX)
    }
}

/// Elementwise functions of one operand.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum UnaryOp {
    /// `max(x, 0)`; NaN stays NaN.
    Relu,
    /// `-x`.
    Neg,
    /// `e^x`.
    Exp,
    /// Natural logarithm.
    Log,
    /// Square root.
    Sqrt,
    /// `1 / sqrt(x)`.
    Rsqrt,
    /// `|x|`.
    Abs,
    /// Hyperbolic tangent.
    Tanh,
    /// `1 / (1 + e^-x)`.
    Sigmoid,
    /// `1 / x`.
    Reciprocal,
    /// The error function (`torch.erf`), via libm's `erff`.
    Erf,
    /// Identity.
    Copy,
}

/// Elementwise functions of two operands. Comparisons produce 1.0 (true) or 0.0 (false);
/// `Max`/`Min` propagate NaN like `torch.maximum`/`torch.minimum`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum BinaryOp {
    /// `a + b`.
    Add,
    /// `a - b`.
    Sub,
    /// `a * b`.
    Mul,
    /// `a / b`.
    Div,
    /// Larger of the two (NaN if either is NaN).
    Max,
    /// Smaller of the two (NaN if either is NaN).
    Min,
    /// `a ^ b`: `a * a` and `a * a * a` for the exponents 2 and 3 (as torch for a scalar
    /// exponent), else `powf`.
    Pow,
    /// `a == b`.
    Eq,
    /// `a != b`.
    Ne,
    /// `a < b`.
    Lt,
    /// `a <= b`.
    Le,
    /// `a > b`.
    Gt,
    /// `a >= b`.
    Ge,
}

/// The function of one step of a [`KernelOp::Fused`] kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FusedFn {
    /// One operand.
    Unary(UnaryOp),
    /// Two operands.
    Binary(BinaryOp),
    /// `[cond, a, b]`: `cond != 0 ? a : b`.
    Select,
}

impl FusedFn {
    /// How many operands the function takes.
    pub fn arity(self) -> usize {
        match self {
            FusedFn::Unary(_) => 1,
            FusedFn::Binary(_) => 2,
            FusedFn::Select => 3,
        }
    }
}

/// An operand of one step of a [`KernelOp::Fused`] kernel.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum FusedArg {
    /// The kernel's input `i` (broadcast to the output shape).
    Input(usize),
    /// The value of an earlier step.
    Step(usize),
    /// A constant.
    Const(#[serde(with = "json_f32")] f32),
}

/// One step of a [`KernelOp::Fused`] kernel: `f(args)` for every output element.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FusedStep {
    /// The function.
    pub f: FusedFn,
    /// Its operands.
    pub args: Vec<FusedArg>,
}

/// A compute kernel on one core. Inputs and output are whole local buffers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum KernelOp {
    /// `[a: m x k, b: k x n] -> m x n`, or batched `[bt, m, k] x [bt, k, n] -> [bt, m, n]`.
    /// With `accumulate`, each product term is added into the existing output value in `k`
    /// order (as if the FP32 accumulator were preloaded), so splitting `k` over several
    /// accumulating matmuls gives the same bits as one unsplit matmul. Otherwise the output
    /// is overwritten.
    ///
    /// With an `epilogue`, each output element is then transformed in registers before it is
    /// written: the steps of a [`KernelOp::Fused`] kernel whose input 0 is the matmul's f32
    /// result and whose input `i >= 1` is the kernel's input `i + 1` (extra inputs after `a`
    /// and `b`, broadcast to the output shape). Same bits as the matmul followed by that
    /// `Fused` kernel, without a second pass over the output in SRAM.
    MatMul {
        /// `out += a @ b` instead of `out = a @ b`.
        accumulate: bool,
        /// Elementwise steps applied to the result (empty: none).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        epilogue: Vec<FusedStep>,
    },
    /// `out = op(in)`; input and output shapes are equal.
    Unary {
        /// The function.
        op: UnaryOp,
    },
    /// `out = op(a, b)` with numpy broadcasting of both inputs to the output shape (ranks
    /// right-aligned, size-1 dimensions broadcast).
    Binary {
        /// The function.
        op: BinaryOp,
    },
    /// Inputs `[cond, a, b]` broadcast to the output: `out = cond != 0 ? a : b`.
    Select,
    /// A chain of elementwise functions in one pass over the output: each step computes one
    /// value per output element from inputs (broadcast to the output shape), constants and
    /// earlier steps, exactly as the `Unary`/`Binary`/`Select` kernel of that function would;
    /// the last step is the output. Intermediate values never leave the core's registers, so
    /// SRAM sees each input read once and the output written once.
    Fused {
        /// The steps, in order (at least one; a step uses only earlier steps).
        steps: Vec<FusedStep>,
    },
    /// Sum over `dims`; the output keeps the rank with the reduced dimensions of size 1.
    /// Summation runs in row-major order of the input.
    ReduceSum {
        /// Dimensions to reduce, each `< rank`, no repeats.
        dims: Vec<usize>,
    },
    /// Maximum over `dims` (NaN if any reduced element is NaN, as `torch.amax`); the output
    /// keeps the rank with the reduced dimensions of size 1.
    ReduceMax {
        /// Dimensions to reduce, each `< rank`, no repeats.
        dims: Vec<usize>,
    },
    /// `out.shape[i] = in.shape[perm[i]]` and `out[j] = in[i]` with `i[perm[d]] = j[d]`
    /// (`torch.permute`).
    Transpose {
        /// A permutation of `0 .. rank`.
        perm: Vec<usize>,
    },
    /// Same element count, row-major reinterpretation.
    Reshape,
    /// `out = in * factor`; shapes equal.
    Scale {
        /// The multiplier.
        #[serde(with = "json_f32")]
        factor: f32,
    },
    /// Strided window: `out[j] = in[offsets + j * strides]` on every dimension; every read
    /// index must lie inside the input.
    Slice {
        /// Start index on each dimension.
        offsets: Vec<usize>,
        /// Step on each dimension (at least 1).
        strides: Vec<usize>,
    },
    /// Inputs `[table: V x D, ids: any shape]`, output `ids.shape + [D]`: row `ids[i]` of the
    /// table for every index (`torch.embedding`). Every id must be in `0..V`.
    Embedding,
    /// One vocabulary part of an embedding (a table too large to copy to every core is split
    /// by rows; the parts summed give the lookup). Inputs `[table: Vk x D, ids: S]` where the
    /// table holds rows `offset .. offset + Vk` of a `total`-row table, output `[1] + S + [D]`:
    /// row `id - offset` for every id in that range, zeros for the others. Every id must be
    /// in `0..total`.
    EmbeddingPart {
        /// The table row of input row 0.
        offset: usize,
        /// Rows of the whole table.
        total: usize,
    },
    /// Inputs `[grad: S + [D], ids: S]`, output `Vk x D`: the sum of the gradient rows of every
    /// id in `offset .. offset + Vk` into row `id - offset`, in index order; ids outside the
    /// range and ids equal to `skip` contribute nothing (`embedding_dense_backward`).
    EmbeddingGrad {
        /// The table row of output row 0.
        offset: usize,
        /// The padding index, whose row gets no gradient.
        skip: Option<usize>,
    },
    /// `out[i] = start + i[dim]`: an index ramp along `dim` (constant along the other dims);
    /// no inputs.
    Iota {
        /// The dimension the values count along.
        dim: usize,
        /// The value at index 0 (this shard's offset in the whole tensor).
        start: usize,
    },
    /// Uniform random numbers in `[0, 1)` (24 random bits each), no inputs: `out[j]` is drawn
    /// from `(run seed, stream, k)` only, `k` being the row-major index of `offsets + j` in a
    /// tensor of `shape` — so the values do not depend on how the tensor is split over cores.
    /// The run seed is a parameter of the run (`SimMesh::with_seed`), not of the Program.
    Random {
        /// Tells the random tensors of one Program apart.
        stream: u64,
        /// Where this buffer's box starts in the whole tensor.
        offsets: Vec<usize>,
        /// The whole tensor's shape.
        shape: Vec<usize>,
    },
    /// `out = decode(encode(in))` in the output's storage format with the bias of
    /// `Program::scales[scale]`, rounding to nearest even, saturating (`../shared/specs/cfloat.md`
    /// D1, D4, D5); status flags and the input's amax are counted per scale. Shapes equal.
    Convert {
        /// Index into `Program::scales`.
        scale: usize,
    },
    /// The transpose of a strided window: `out` is `value` everywhere except
    /// `out[low + i * (interior + 1)] = in[i]`; every written index must lie inside the output.
    Pad {
        /// Elements before the first input element, on each dimension.
        low: Vec<usize>,
        /// Elements between two input elements, on each dimension.
        interior: Vec<usize>,
        /// The fill value.
        #[serde(with = "json_f32")]
        value: f32,
    },
}

impl KernelOp {
    /// Short name for messages, e.g. `MatMul`, `Binary(Add)`.
    pub fn name(&self) -> String {
        match self {
            KernelOp::MatMul { epilogue, .. } if epilogue.is_empty() => "MatMul".to_string(),
            KernelOp::MatMul { epilogue, .. } => format!("MatMul+Fused({})", epilogue.len()),
            KernelOp::Unary { op } => format!("Unary({op:?})"),
            KernelOp::Binary { op } => format!("Binary({op:?})"),
            KernelOp::Select => "Select".to_string(),
            KernelOp::Fused { steps } => format!("Fused({})", steps.len()),
            KernelOp::ReduceSum { .. } => "ReduceSum".to_string(),
            KernelOp::ReduceMax { .. } => "ReduceMax".to_string(),
            KernelOp::Transpose { .. } => "Transpose".to_string(),
            KernelOp::Reshape => "Reshape".to_string(),
            KernelOp::Scale { .. } => "Scale".to_string(),
            KernelOp::Slice { .. } => "Slice".to_string(),
            KernelOp::Pad { .. } => "Pad".to_string(),
            KernelOp::Iota { .. } => "Iota".to_string(),
            KernelOp::Embedding => "Embedding".to_string(),
            KernelOp::EmbeddingPart { .. } => "EmbeddingPart".to_string(),
            KernelOp::EmbeddingGrad { .. } => "EmbeddingGrad".to_string(),
            KernelOp::Convert { .. } => "Convert".to_string(),
            KernelOp::Random { .. } => "Random".to_string(),
        }
    }
}

/// One step of a Program. Instructions run in order; the simulator overlaps them in time
/// only as far as their data dependencies and resources allow.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Instr {
    /// The buffer becomes live on its core (counts against that core's SRAM); contents zero.
    Alloc {
        /// The buffer.
        buf: BufId,
    },
    /// The buffer's SRAM is released; the buffer may not be used until it is allocated again.
    Free {
        /// The buffer.
        buf: BufId,
    },
    /// Host input box -> core buffer box, over the DIP/HBM path. Box sizes must be equal and
    /// the dtypes the same.
    Load {
        /// Index into `Program::inputs`.
        input: usize,
        /// Box of the input tensor.
        src: Region,
        /// Destination buffer.
        buf: BufId,
        /// Box of the buffer.
        dst: Region,
    },
    /// Core buffer box -> host output box, over the DIP/HBM path. Box sizes must be equal, or
    /// the source box's first dim the destination box's leading dims merged (a `[49, n]` box
    /// of rows into `[1, 49, n]` of an output `[8, 512, n]`: [`merged_lead`]; the elements
    /// go in row-major order); the dtypes the same.
    Store {
        /// Source buffer.
        buf: BufId,
        /// Box of the buffer.
        src: Region,
        /// Index into `Program::outputs`.
        output: usize,
        /// Box of the output tensor.
        dst: Region,
    },
    /// The output is exactly an input (host side, no simulated time). Shapes and dtypes equal.
    HostCopy {
        /// Index into `Program::inputs`.
        input: usize,
        /// Index into `Program::outputs`.
        output: usize,
    },
    /// Core -> core over the mesh (XY route); on the same core a local SRAM copy. Box sizes
    /// must be equal and the dtypes the same.
    Copy {
        /// Source buffer.
        src: BufId,
        /// Box of the source.
        src_region: Region,
        /// Destination buffer.
        dst: BufId,
        /// Box of the destination.
        dst_region: Region,
    },
    /// Every element of the buffer becomes `value`.
    Fill {
        /// The buffer.
        buf: BufId,
        /// The value (may be `-inf`, e.g. to start a max-reduction).
        #[serde(with = "json_f32")]
        value: f32,
    },
    /// A kernel on the output buffer's core; every input must live on that core.
    Kernel {
        /// What to compute.
        op: KernelOp,
        /// Input buffers, in the order the op documents.
        inputs: Vec<BufId>,
        /// Output buffer.
        output: BufId,
    },
}

impl Instr {
    /// The variant name, e.g. `Copy`.
    pub fn name(&self) -> &'static str {
        match self {
            Instr::Alloc { .. } => "Alloc",
            Instr::Free { .. } => "Free",
            Instr::Load { .. } => "Load",
            Instr::Store { .. } => "Store",
            Instr::HostCopy { .. } => "HostCopy",
            Instr::Copy { .. } => "Copy",
            Instr::Fill { .. } => "Fill",
            Instr::Kernel { .. } => "Kernel",
        }
    }
}

/// What [`Program::validate`] learned about a valid Program.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProgramStats {
    /// Peak live buffer bytes of every core that allocates a buffer, sorted by core.
    pub peak_sram_per_core: Vec<(CoreId, u64)>,
    /// Number of cores that allocate at least one buffer.
    pub cores_used: usize,
    /// Core-to-core Copies whose XY route passes through a disabled site (allowed: a
    /// harvested site's router is assumed to keep forwarding; a placement inside a
    /// disabled-free rectangle keeps this at 0).
    pub copies_through_disabled: usize,
}

/// A Program that passed [`Program::validate`], with what the check learned: a caller that
/// runs one Program many times checks it once ([`crate::SimMesh::values`]).
#[derive(Clone, Debug)]
pub struct ValidProgram {
    program: Program,
    stats: ProgramStats,
    /// The simulator's plan of its functional pass, made at the first run.
    plan: std::sync::OnceLock<crate::sim::Plan>,
}

impl ValidProgram {
    /// Validates `program` ([`Program::validate`]).
    pub fn new(program: Program) -> Result<ValidProgram, RuntimeError> {
        let stats = program.validate()?;
        Ok(ValidProgram { program, stats, plan: Default::default() })
    }

    /// The Program (read only: a change would need a new check).
    pub fn program(&self) -> &Program {
        &self.program
    }

    /// What the check learned.
    pub fn stats(&self) -> &ProgramStats {
        &self.stats
    }

    pub(crate) fn plan(&self) -> &crate::sim::Plan {
        self.plan.get_or_init(|| crate::sim::Plan::new(&self.program))
    }
}

/// A complete, self-contained program for the simulated machine.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Program {
    /// Format version, [`FORMAT_VERSION`].
    pub format_version: u32,
    /// The machine it was compiled for.
    pub target: Target,
    /// Host tensors passed to `Device::execute`, in order.
    pub inputs: Vec<TensorDecl>,
    /// Host tensors returned, in order (zero until written by Store or HostCopy).
    pub outputs: Vec<TensorDecl>,
    /// Local arrays in core SRAM.
    pub buffers: Vec<BufferDecl>,
    /// The instructions, run in order.
    pub instrs: Vec<Instr>,
    /// Provenance, optional: the names of the compiler ops the instructions came from (e.g.
    /// `d1.matmul %7`). The profile's per-op roofline groups instructions by them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub op_names: Vec<String>,
    /// Provenance, optional: for each instruction, its index into `op_names` (`null`: none).
    /// It may be shorter than `instrs`; later instructions have no op.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub instr_op: Vec<Option<u32>>,
    /// The low-precision tensors' formats and biases (see [`KernelOp::Convert`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scales: Vec<ScaleDecl>,
}

/// Liveness of a buffer while walking the instructions.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Life {
    NotYet,
    Live,
    Freed,
}

impl Program {
    /// An empty Program for `target`.
    pub fn new(target: Target) -> Program {
        Program {
            format_version: FORMAT_VERSION,
            target,
            inputs: Vec::new(),
            outputs: Vec::new(),
            buffers: Vec::new(),
            instrs: Vec::new(),
            op_names: Vec::new(),
            instr_op: Vec::new(),
            scales: Vec::new(),
        }
    }

    /// Records that instructions `first..` (up to the current end) came from the op `name`.
    pub fn label_since(&mut self, first: usize, name: impl Into<String>) {
        let op = Some(self.op_names.len() as u32);
        self.op_names.push(name.into());
        self.instr_op.resize(first.min(self.instrs.len()), None);
        self.instr_op.resize(self.instrs.len(), op);
    }

    /// The name of the op instruction `pc` came from, if the Program records it.
    pub fn op_of(&self, pc: usize) -> Option<&str> {
        let op = (*self.instr_op.get(pc)?)?;
        self.op_names.get(op as usize).map(String::as_str)
    }

    /// Compact JSON; equal Programs give identical bytes.
    pub fn to_json(&self) -> String {
        // Cannot fail: no maps with non-string keys, and non-finite f32 attributes are
        // written as strings (non-finite target numbers become `null`, which
        // `Target::validate` rejects on the way back in).
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// Indented JSON, for reading and diffing.
    pub fn to_json_pretty(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// Parses JSON written by [`Program::to_json`]. Checks the format version; call
    /// [`Program::validate`] for everything else.
    pub fn from_json(s: &str) -> Result<Program, RuntimeError> {
        // One parse in the common case; only a failure looks at the version, so that a newer
        // format gets a version error rather than a field error.
        serde_json::from_str::<Program>(s)
            .map_err(|e| {
                #[derive(Deserialize)]
                struct Version {
                    format_version: Option<u32>,
                }
                if let Ok(Version { format_version: Some(v) }) = serde_json::from_str::<Version>(s) {
                    if v != FORMAT_VERSION {
                        return version_error(v);
                    }
                }
                RuntimeError::new(format!(
                    "invalid Program JSON at line {} column {}: {e}; the text must come from \
                     Program::to_json (format_version {FORMAT_VERSION})",
                    e.line(),
                    e.column()
                ))
            })
            .and_then(|p| {
                if p.format_version != FORMAT_VERSION {
                    return Err(version_error(p.format_version));
                }
                Ok(p)
            })
    }

    /// Checks the Program without running it: target sanity, every buffer on an enabled
    /// core, every index and region in bounds with the right rank, equal box sizes, kernel
    /// shapes and placement, Alloc before use, no use after Free, no double Alloc, and that
    /// no core's live buffers ever exceed [`Target::usable_sram_bytes`]. The error names the
    /// instruction index and the buffer, core or tensor involved.
    pub fn validate(&self) -> Result<ProgramStats, RuntimeError> {
        if self.format_version != FORMAT_VERSION {
            return Err(version_error(self.format_version));
        }
        self.target.validate()?;
        crate::roofline::check_provenance(self)?;
        for (kind, decls) in [("input", &self.inputs), ("output", &self.outputs)] {
            for (i, t) in decls.iter().enumerate() {
                if numel(&t.shape).is_none() {
                    return Err(RuntimeError::new(format!(
                        "{kind} {i} has shape {} whose element count overflows",
                        show(&t.shape)
                    )));
                }
            }
        }
        for (k, sc) in self.scales.iter().enumerate() {
            let Some(format) = sc.dtype.storage_format() else {
                return Err(RuntimeError::new(format!(
                    "scale {k} ({}) has dtype {:?}; a scale is for bf16 or a CFloat format",
                    sc.name, sc.dtype
                )));
            };
            let ok = if format == Format::Bf16 { sc.bias == 127 } else { sc.bias <= MAX_BIAS };
            if !ok {
                return Err(RuntimeError::new(format!(
                    "scale {k} ({}) has bias {} which {:?} cannot have (CFloat: 0..={MAX_BIAS}, bf16: 127)",
                    sc.name, sc.bias, sc.dtype
                )));
            }
            if let Some(i) = sc.input.filter(|&i| i >= self.inputs.len()) {
                return Err(RuntimeError::new(format!(
                    "scale {k} ({}) names input {i} but the Program has {} inputs",
                    sc.name,
                    self.inputs.len()
                )));
            }
        }
        let mut buf_bytes = Vec::with_capacity(self.buffers.len());
        for (b, decl) in self.buffers.iter().enumerate() {
            if !self.target.is_enabled(&decl.core) {
                let why = if self.target.in_range(&decl.core) {
                    "which is disabled (harvested)".to_string()
                } else {
                    format!(
                        "which is outside the {} x {} mesh",
                        self.target.rows(),
                        self.target.cols()
                    )
                };
                return Err(RuntimeError::new(format!(
                    "buffer {b} is placed on core {} {why} in target '{}'; place it on an \
                     enabled core (see Target::is_enabled / find_free_block)",
                    decl.core, self.target.name
                )));
            }
            let Some(bytes) = decl.size_bytes() else {
                return Err(RuntimeError::new(format!(
                    "buffer {b} on core {} has shape {} whose byte size overflows",
                    decl.core,
                    show(&decl.shape)
                )));
            };
            buf_bytes.push(bytes);
        }

        let disabled: BTreeSet<&CoreId> = self.target.disabled.iter().collect();
        let mut life = vec![Life::NotYet; self.buffers.len()];
        let mut live_bytes: BTreeMap<CoreId, u64> = BTreeMap::new();
        let mut peak: BTreeMap<CoreId, u64> = BTreeMap::new();
        let mut through_disabled = 0usize;
        let usable = self.target.usable_sram_bytes();

        for (pc, instr) in self.instrs.iter().enumerate() {
            let at = |msg: String| {
                RuntimeError::new(format!("instruction {pc} ({}): {msg}", instr.name()))
            };
            match instr {
                Instr::Alloc { buf } => {
                    let decl = self.buffer(*buf).map_err(at)?;
                    if life[*buf] == Life::Live {
                        return Err(at(format!(
                            "buffer {buf} on core {} is already allocated; Free it first",
                            decl.core
                        )));
                    }
                    life[*buf] = Life::Live;
                    let live = live_bytes.entry(decl.core.clone()).or_insert(0);
                    *live = live.saturating_add(buf_bytes[*buf]);
                    if *live > usable {
                        // The compiler op the instruction belongs to, when the Program says.
                        let op = self.op_of(pc);
                        return Err(RuntimeError::new(format!(
                            "core {} needs {} B of SRAM at instruction {pc}{} but has {} B usable \
                             ({}); the Alloc of buffer {buf} ({} {:?}, {} B) overflows it. Free \
                             dead buffers earlier or split the data over more cores",
                            decl.core,
                            thousands(*live),
                            op.map(|n| format!(" ({n})")).unwrap_or_default(),
                            thousands(usable),
                            self.target.describe_sram(),
                            show(&decl.shape),
                            decl.dtype,
                            thousands(buf_bytes[*buf])
                        )));
                    }
                    let p = peak.entry(decl.core.clone()).or_insert(0);
                    *p = (*p).max(*live);
                }
                Instr::Free { buf } => {
                    self.live(*buf, &life).map_err(at)?;
                    life[*buf] = Life::Freed;
                    let core = &self.buffers[*buf].core;
                    if let Some(live) = live_bytes.get_mut(core) {
                        *live = live.saturating_sub(buf_bytes[*buf]);
                    }
                }
                Instr::Load {
                    input,
                    src,
                    buf,
                    dst,
                } => {
                    let t = self.tensor(&self.inputs, "input", *input).map_err(at)?;
                    let decl = self.live(*buf, &life).map_err(at)?;
                    check_region(src, &t.shape, || format!("input {input}")).map_err(at)?;
                    check_region(dst, &decl.shape, || format!("buffer {buf}")).map_err(at)?;
                    check_same_sizes(src, dst).map_err(at)?;
                    check_dtype(t.dtype, || format!("input {input}"), decl.dtype, *buf)
                        .map_err(at)?;
                }
                Instr::Store {
                    buf,
                    src,
                    output,
                    dst,
                } => {
                    let decl = self.live(*buf, &life).map_err(at)?;
                    let t = self.tensor(&self.outputs, "output", *output).map_err(at)?;
                    check_region(src, &decl.shape, || format!("buffer {buf}")).map_err(at)?;
                    check_region(dst, &t.shape, || format!("output {output}")).map_err(at)?;
                    if merged_lead(&src.sizes, &dst.sizes).is_none() {
                        check_same_sizes(src, dst).map_err(at)?;
                    }
                    check_dtype(t.dtype, || format!("output {output}"), decl.dtype, *buf)
                        .map_err(at)?;
                }
                Instr::HostCopy { input, output } => {
                    let i = self.tensor(&self.inputs, "input", *input).map_err(at)?;
                    let o = self.tensor(&self.outputs, "output", *output).map_err(at)?;
                    if i != o {
                        return Err(at(format!(
                            "input {input} is {} {:?} but output {output} is {} {:?}; a \
                             HostCopy needs identical shape and dtype",
                            show(&i.shape),
                            i.dtype,
                            show(&o.shape),
                            o.dtype
                        )));
                    }
                }
                Instr::Copy {
                    src,
                    src_region,
                    dst,
                    dst_region,
                } => {
                    let s = self.live(*src, &life).map_err(at)?;
                    let d = self.live(*dst, &life).map_err(at)?;
                    check_region(src_region, &s.shape, || format!("buffer {src}")).map_err(at)?;
                    check_region(dst_region, &d.shape, || format!("buffer {dst}")).map_err(at)?;
                    check_same_sizes(src_region, dst_region).map_err(at)?;
                    if s.dtype != d.dtype {
                        return Err(at(format!(
                            "buffer {src} is {:?} but buffer {dst} is {:?}; a Copy moves bytes \
                             and cannot convert (use a Kernel)",
                            s.dtype, d.dtype
                        )));
                    }
                    if s.core != d.core
                        && self
                            .target
                            .route(&s.core, &d.core)
                            .iter()
                            .any(|l| disabled.contains(&l.to))
                    {
                        through_disabled += 1;
                    }
                }
                Instr::Fill { buf, .. } => {
                    self.live(*buf, &life).map_err(at)?;
                }
                Instr::Kernel { op, inputs, output } => {
                    let out = self.live(*output, &life).map_err(at)?;
                    let mut in_shapes = Vec::with_capacity(inputs.len());
                    for (k, &b) in inputs.iter().enumerate() {
                        let decl = self.live(b, &life).map_err(at)?;
                        if decl.core != out.core {
                            return Err(at(format!(
                                "{}: input {k} (buffer {b}) is on core {} but the output \
                                 (buffer {output}) is on core {}; Copy the input to core {} \
                                 first",
                                op.name(),
                                decl.core,
                                out.core,
                                out.core
                            )));
                        }
                        in_shapes.push(decl.shape.as_slice());
                    }
                    let in_dtypes: Vec<DType> =
                        inputs.iter().map(|&b| self.buffers[b].dtype).collect();
                    check_kernel(op, &in_shapes, &out.shape)
                        .and_then(|()| self.check_formats(op, &in_dtypes, out.dtype))
                        .map_err(|m| {
                            at(format!(
                                "{} on core {} (output buffer {output}): {m}",
                                op.name(),
                                out.core
                            ))
                        })?;
                }
            }
        }

        let peak_sram_per_core: Vec<(CoreId, u64)> = peak.into_iter().collect();
        Ok(ProgramStats {
            cores_used: peak_sram_per_core.len(),
            peak_sram_per_core,
            copies_through_disabled: through_disabled,
        })
    }

    /// Storage formats are written only by `Convert` (to its scale's dtype, from a float) and
    /// moved unchanged by the data-movement kernels; every other kernel writes `F32`, `Bool`
    /// or an integer dtype.
    fn check_formats(&self, op: &KernelOp, ins: &[DType], out: DType) -> Result<(), String> {
        if let KernelOp::Convert { scale } = op {
            let sc = self.scales.get(*scale).ok_or_else(|| {
                format!("scale {scale} does not exist (the Program declares {} scales)", self.scales.len())
            })?;
            if out != sc.dtype {
                return Err(format!("the output is {out:?} but scale {scale} ({}) is {:?}", sc.name, sc.dtype));
            }
            if !ins.first().is_some_and(|d| d.is_float()) {
                return Err(format!("the input must be a float, not {:?}", ins.first()));
            }
            return Ok(());
        }
        if out.storage_format().is_none() {
            return Ok(());
        }
        let moves = match op {
            KernelOp::Transpose { .. } | KernelOp::Reshape | KernelOp::Slice { .. } => true,
            KernelOp::Unary { op: UnaryOp::Copy } => true,
            KernelOp::Pad { value, .. } => *value == 0.0,
            _ => false,
        };
        if !moves || ins.first() != Some(&out) {
            return Err(format!(
                "writes {out:?} from {ins:?}: only Convert produces a storage format, and only data                  movement (Transpose, Reshape, Slice, zero Pad, Copy) keeps one"
            ));
        }
        Ok(())
    }

    /// The declaration of buffer `b`, or a message saying it does not exist.
    fn buffer(&self, b: BufId) -> Result<&BufferDecl, String> {
        self.buffers.get(b).ok_or_else(|| {
            format!(
                "buffer {b} does not exist (the Program declares {} buffers)",
                self.buffers.len()
            )
        })
    }

    /// The declaration of buffer `b` if it is live, or a message saying why not.
    fn live(&self, b: BufId, life: &[Life]) -> Result<&BufferDecl, String> {
        let decl = self.buffer(b)?;
        match life[b] {
            Life::Live => Ok(decl),
            Life::NotYet => Err(format!(
                "buffer {b} on core {} is used before its Alloc; add an Alloc first",
                decl.core
            )),
            Life::Freed => Err(format!(
                "buffer {b} on core {} is used after its Free; move the Free later",
                decl.core
            )),
        }
    }

    /// Host tensor `i` of `decls`, or a message saying it does not exist.
    fn tensor<'a>(
        &self,
        decls: &'a [TensorDecl],
        kind: &str,
        i: usize,
    ) -> Result<&'a TensorDecl, String> {
        decls.get(i).ok_or_else(|| {
            format!(
                "{kind} {i} does not exist (the Program declares {} {kind}s)",
                decls.len()
            )
        })
    }
}

fn version_error(v: u32) -> RuntimeError {
    RuntimeError::new(format!(
        "Program format_version {v} is not supported: this runtime reads version \
         {FORMAT_VERSION}; recompile the model with a matching torch-dojo"
    ))
}

/// A region of an array of `shape` (named `what`) is in bounds with the same rank.
fn check_region(r: &Region, shape: &[usize], what: impl Fn() -> String) -> Result<(), String> {
    // `what` names the array in a message; it is formatted only when there is one.
    if r.offsets.len() != shape.len() || r.sizes.len() != shape.len() {
        return Err(format!(
            "region with {} offsets and {} sizes does not match the rank {} of {} \
             (shape {})",
            r.offsets.len(),
            r.sizes.len(),
            shape.len(),
            what(),
            show(shape)
        ));
    }
    for (d, ((&o, &s), &n)) in r.offsets.iter().zip(&r.sizes).zip(shape).enumerate() {
        let end = o.checked_add(s);
        if end.is_none_or(|e| e > n) {
            return Err(format!(
                "region {:?}+{:?} is out of bounds on dim {d} of {} (shape {}): {o}..{} \
                 but the dim has size {n}",
                r.offsets,
                r.sizes,
                what(),
                show(shape),
                end.map_or_else(|| "overflow".to_string(), |e| e.to_string())
            ));
        }
    }
    Ok(())
}

/// Source and destination boxes of a transfer have equal sizes.
fn check_same_sizes(src: &Region, dst: &Region) -> Result<(), String> {
    if src.sizes != dst.sizes {
        return Err(format!(
            "source box sizes {} differ from destination box sizes {}; a transfer copies a \
             box of one shape (Reshape on a core to change it)",
            show(&src.sizes),
            show(&dst.sizes)
        ));
    }
    Ok(())
}

fn check_dtype(host: DType, what: impl Fn() -> String, buf: DType, b: BufId) -> Result<(), String> {
    if host != buf {
        return Err(format!(
            "{} is {host:?} but buffer {b} is {buf:?}; transfers cannot convert dtypes",
            what()
        ));
    }
    Ok(())
}

/// The steps of a fused kernel (or a matmul's epilogue) over inputs of shapes `ins`: each
/// input broadcasts to `out`, each step has its function's arity and reads only inputs that
/// exist and earlier steps.
fn check_steps(steps: &[FusedStep], ins: &[&[usize]], out: &[usize]) -> Result<(), String> {
    for (k, s) in ins.iter().enumerate() {
        if !broadcasts_to(s, out) {
            return Err(format!("input {k} of shape {} does not broadcast to the output shape {}", show(s), show(out)));
        }
    }
    for (i, step) in steps.iter().enumerate() {
        if step.args.len() != step.f.arity() {
            return Err(format!("step {i}: {:?} takes {} operand(s), got {}", step.f, step.f.arity(), step.args.len()));
        }
        for a in &step.args {
            match *a {
                FusedArg::Input(k) if k >= ins.len() => return Err(format!("step {i} reads input {k} of {}", ins.len())),
                FusedArg::Step(j) if j >= i => return Err(format!("step {i} reads step {j}, which is not an earlier step")),
                _ => {}
            }
        }
    }
    Ok(())
}

/// Shape rules of each kernel op; the message says what is wrong (without location).
pub(crate) fn check_kernel(op: &KernelOp, ins: &[&[usize]], out: &[usize]) -> Result<(), String> {
    let arity = |n: usize| {
        if ins.len() == n {
            Ok(())
        } else {
            Err(format!("takes {n} input(s), got {}", ins.len()))
        }
    };
    let same = |a: &[usize]| {
        if a == out {
            Ok(())
        } else {
            Err(format!(
                "input shape {} must equal output shape {}",
                show(a),
                show(out)
            ))
        }
    };
    match op {
        KernelOp::MatMul { epilogue, .. } => {
            if ins.len() < 2 || (epilogue.is_empty() && ins.len() > 2) {
                return Err(format!("takes 2 inputs (a, b){}, got {}", if epilogue.is_empty() { "" } else { " and the epilogue's" }, ins.len()));
            }
            // The epilogue's input 0 is the matmul result, input i >= 1 the kernel's input i + 1.
            if !epilogue.is_empty() {
                let epi_ins: Vec<&[usize]> = std::iter::once(out).chain(ins[2..].iter().copied()).collect();
                check_steps(epilogue, &epi_ins, out).map_err(|e| format!("epilogue: {e}"))?;
            }
            let (a, b) = (ins[0], ins[1]);
            let ok = match (a.len(), b.len(), out.len()) {
                (2, 2, 2) => a[1] == b[0] && out == [a[0], b[1]],
                (3, 3, 3) => a[0] == b[0] && a[2] == b[1] && out == [a[0], a[1], b[2]],
                (r, 2, o) if r > 3 && o == r => a[r - 1] == b[0] && out[..r - 1] == a[..r - 1] && out[r - 1] == b[1],
                _ => false,
            };
            if !ok {
                return Err(format!(
                    "shapes {} @ {} -> {} do not fit [m,k]@[k,n]->[m,n], \
                     [bt,m,k]@[bt,k,n]->[bt,m,n] or [d...,k]@[k,n]->[d...,n]",
                    show(a),
                    show(b),
                    show(out)
                ));
            }
        }
        KernelOp::Unary { .. } | KernelOp::Scale { .. } | KernelOp::Convert { .. } => {
            arity(1)?;
            same(ins[0])?;
        }
        KernelOp::Binary { .. } | KernelOp::Select => {
            arity(if matches!(op, KernelOp::Select) { 3 } else { 2 })?;
            for (k, s) in ins.iter().enumerate() {
                if !broadcasts_to(s, out) {
                    return Err(format!(
                        "input {k} of shape {} does not broadcast to the output shape {}",
                        show(s),
                        show(out)
                    ));
                }
            }
        }
        KernelOp::Fused { steps } => {
            if ins.is_empty() || steps.is_empty() {
                return Err("a fused kernel needs at least one input and one step".into());
            }
            check_steps(steps, ins, out)?;
        }
        KernelOp::ReduceSum { dims } | KernelOp::ReduceMax { dims } => {
            arity(1)?;
            let a = ins[0];
            let mut seen = vec![false; a.len()];
            for &d in dims {
                if d >= a.len() || seen[d] {
                    return Err(format!(
                        "dims {dims:?} must be distinct and below the input rank {}",
                        a.len()
                    ));
                }
                seen[d] = true;
            }
            let want: Vec<usize> = a
                .iter()
                .zip(&seen)
                .map(|(&n, &r)| if r { 1 } else { n })
                .collect();
            if want != out {
                return Err(format!(
                    "reducing {} over {dims:?} gives {} (keepdim), but the output is {}",
                    show(a),
                    show(&want),
                    show(out)
                ));
            }
        }
        KernelOp::Slice { offsets, strides } => {
            arity(1)?;
            let a = ins[0];
            if offsets.len() != a.len() || strides.len() != a.len() || out.len() != a.len() {
                return Err(format!("slice of rank {} needs offsets, strides and output of that rank", a.len()));
            }
            for d in 0..a.len() {
                let last = (out[d].max(1) - 1).checked_mul(strides[d]).and_then(|x| x.checked_add(offsets[d]));
                if strides[d] == 0 || out[d] == 0 || last.is_none_or(|l| l >= a[d]) {
                    return Err(format!(
                        "slice dim {d}: {} elements from {} in steps of {} do not fit the input's {}",
                        out[d], offsets[d], strides[d], a[d]
                    ));
                }
            }
        }
        KernelOp::Embedding => {
            arity(2)?;
            let (t, ids) = (ins[0], ins[1]);
            let want: Vec<usize> = ids.iter().copied().chain(t.get(1).copied()).collect();
            if t.len() != 2 || want != out {
                return Err(format!("embedding of table {} by ids {} gives ids + [D], not {}", show(t), show(ids), show(out)));
            }
        }
        KernelOp::EmbeddingPart { offset, total } => {
            arity(2)?;
            let (t, ids) = (ins[0], ins[1]);
            let want: Vec<usize> = std::iter::once(1).chain(ids.iter().copied()).chain(t.get(1).copied()).collect();
            if t.len() != 2 || want != out || offset.checked_add(t[0]).is_none_or(|end| end > *total) {
                return Err(format!(
                    "embedding part of table rows {offset}.. ({} of {total}) by ids {} gives [1] + ids + [D], not {}",
                    show(t),
                    show(ids),
                    show(out)
                ));
            }
        }
        KernelOp::EmbeddingGrad { .. } => {
            arity(2)?;
            let (g, ids) = (ins[0], ins[1]);
            let ok = out.len() == 2 && g.len() == ids.len() + 1 && g[..ids.len()] == *ids && g[ids.len()] == out[1];
            if !ok {
                return Err(format!("embedding gradient {} by ids {} cannot give rows {}", show(g), show(ids), show(out)));
            }
        }
        KernelOp::Random { offsets, shape, .. } => {
            arity(0)?;
            let fits = offsets.len() == out.len()
                && shape.len() == out.len()
                && (0..out.len()).all(|d| offsets[d].checked_add(out[d]).is_some_and(|e| e <= shape[d]));
            if !fits {
                return Err(format!(
                    "random box at {offsets:?} of size {} does not fit the tensor shape {}",
                    show(out),
                    show(shape)
                ));
            }
        }
        KernelOp::Iota { dim, .. } => {
            arity(0)?;
            if *dim >= out.len() {
                return Err(format!("iota dim {dim} is out of range for the output rank {}", out.len()));
            }
        }
        KernelOp::Pad { low, interior, .. } => {
            arity(1)?;
            let a = ins[0];
            if low.len() != a.len() || interior.len() != a.len() || out.len() != a.len() {
                return Err(format!("pad of rank {} needs low, interior and output of that rank", a.len()));
            }
            for d in 0..a.len() {
                let last = (a[d].max(1) - 1)
                    .checked_mul(interior[d].saturating_add(1))
                    .and_then(|x| x.checked_add(low[d]));
                if a[d] == 0 || last.is_none_or(|l| l >= out[d]) {
                    return Err(format!(
                        "pad dim {d}: {} elements placed from {} every {} do not fit the output's {}",
                        a[d], low[d], interior[d].saturating_add(1), out[d]
                    ));
                }
            }
        }
        KernelOp::Transpose { perm } => {
            arity(1)?;
            let a = ins[0];
            let mut seen = vec![false; a.len()];
            let is_perm = perm.len() == a.len()
                && perm
                    .iter()
                    .all(|&p| p < a.len() && !std::mem::replace(&mut seen[p], true));
            if !is_perm {
                return Err(format!(
                    "perm {perm:?} is not a permutation of 0..{}",
                    a.len()
                ));
            }
            let want: Vec<usize> = perm.iter().map(|&p| a[p]).collect();
            if want != out {
                return Err(format!(
                    "permuting {} by {perm:?} gives {}, but the output is {}",
                    show(a),
                    show(&want),
                    show(out)
                ));
            }
        }
        KernelOp::Reshape => {
            arity(1)?;
            if numel(ins[0]) != numel(out) {
                return Err(format!(
                    "cannot reshape {} into {}: element counts differ",
                    show(ins[0]),
                    show(out)
                ));
            }
        }
    }
    Ok(())
}

/// Serde for `f32` attributes that may be non-finite: numbers when finite, otherwise the
/// strings `"nan"`, `"inf"`, `"-inf"` (plain JSON has no such numbers).
pub(crate) mod json_f32 {
    use serde::de::{self, Visitor};
    use serde::{Deserializer, Serializer};
    use std::fmt;

    pub fn serialize<S: Serializer>(v: &f32, s: S) -> Result<S::Ok, S::Error> {
        if v.is_finite() {
            s.serialize_f32(*v)
        } else if v.is_nan() {
            s.serialize_str("nan")
        } else if *v > 0.0 {
            s.serialize_str("inf")
        } else {
            s.serialize_str("-inf")
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f32, D::Error> {
        struct F;
        impl Visitor<'_> for F {
            type Value = f32;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number or one of \"nan\", \"inf\", \"-inf\"")
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<f32, E> {
                Ok(v as f32)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<f32, E> {
                Ok(v as f32)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<f32, E> {
                Ok(v as f32)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<f32, E> {
                match v {
                    "nan" => Ok(f32::NAN),
                    "inf" => Ok(f32::INFINITY),
                    "-inf" => Ok(f32::NEG_INFINITY),
                    _ => Err(E::invalid_value(de::Unexpected::Str(v), &self)),
                }
            }
        }
        d.deserialize_any(F)
    }
}
