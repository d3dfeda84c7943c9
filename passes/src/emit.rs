//! Program emission: mesh-level `d1` IR to the runtime's [`Program`].
//!
//! Every mesh value becomes one buffer on each core of its layout, allocated where it is
//! defined and freed after its last use, so the Program's SRAM use follows the IR's liveness.
//! `d1.reshard` expands into core-to-core copies: for every destination shard, each distinct
//! source shard that overlaps it sends the overlap from its nearest replica. An accumulating
//! `d1.matmul` updates its accumulator's buffers in place when the accumulator dies there.

use dojo_compiler::dialect::{epilogue_extras, host_values, layout_of, matmul_epilogue, FusedExpr, FusedOperand};
use dojo_compiler::layout::Region as IrRegion;
use dojo_compiler::{Attr, CFloatFormat, ElemType, Func, Layout, Module, PassError, TensorType, Value};
use dojo_runtime::program::{BinaryOp, BufId, BufferDecl, DType, FusedArg, FusedFn, FusedStep, Instr, KernelOp, Region, ScaleDecl, TensorDecl, UnaryOp};
use dojo_runtime::{CoreId, Program, Target, UsableGrid};
use std::collections::HashMap;

/// Emit the Program for function `func_name` (or the module's only function).
pub fn emit_program(module: &Module, func_name: Option<&str>) -> Result<Program, PassError> {
    let func = match func_name {
        Some(n) => module.func(n).ok_or_else(|| PassError::Invalid(format!("no function '@{n}' in the module")))?,
        None => match module.funcs.as_slice() {
            [f] => f,
            fs => return Err(PassError::Invalid(format!("the module has {} functions: name one", fs.len()))),
        },
    };
    let mesh = module.attr("dojo.mesh").and_then(Attr::as_str).ok_or(PassError::Invalid(
        "the module has no 'dojo.mesh' attribute: run lower-to-d1 before emitting a Program".into(),
    ))?;
    let target = Target::preset(mesh).map_err(|e| PassError::Invalid(e.to_string()))?;
    Emitter::new(func, target)?.run()
}

pub(crate) fn dtype(elem: ElemType) -> Result<DType, PassError> {
    match elem {
        ElemType::F32 => Ok(DType::F32),
        ElemType::I1 => Ok(DType::Bool),
        ElemType::I64 => Ok(DType::I64),
        ElemType::I32 => Ok(DType::I32),
        ElemType::BF16 => Ok(DType::BF16),
        ElemType::CFloat(f, _) => Ok(match f {
            CFloatFormat::Cf8_143 => DType::Cf8_143,
            CFloatFormat::Cf8_152 => DType::Cf8_152,
            CFloatFormat::Cf16Shp => DType::Cf16Shp,
            CFloatFormat::Cf16Uhp => DType::Cf16Uhp,
        }),
        e => Err(PassError::Invalid(format!("element type {e} cannot be executed yet"))),
    }
}

fn decl(t: &TensorType) -> Result<TensorDecl, PassError> {
    Ok(TensorDecl { shape: t.shape.clone(), dtype: dtype(t.elem)? })
}

fn region_of(r: &IrRegion) -> Region {
    Region::new(r.offsets.clone(), r.sizes.clone())
}

/// The `Fused` kernel of a fused map's `expr`: each step the kernel of its function.
fn fused_kernel(expr: &str) -> Result<KernelOp, String> {
    let e = FusedExpr::parse(expr)?;
    let steps = e
        .steps
        .iter()
        .map(|s| {
            let f = match kernel_for(s.f) {
                Some(KernelOp::Unary { op }) => FusedFn::Unary(op),
                Some(KernelOp::Binary { op }) => FusedFn::Binary(op),
                Some(KernelOp::Select) => FusedFn::Select,
                _ => return Err(format!("no fused step for '{}'", s.f)),
            };
            let args = s
                .args
                .iter()
                .map(|a| match *a {
                    FusedOperand::Input(k) => FusedArg::Input(k),
                    FusedOperand::Step(j) => FusedArg::Step(j),
                    FusedOperand::Const(c) => FusedArg::Const(c as f32),
                })
                .collect();
            Ok(FusedStep { f, args })
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(KernelOp::Fused { steps })
}

fn kernel_for(f: &str) -> Option<KernelOp> {
    let u = |op| Some(KernelOp::Unary { op });
    let b = |op| Some(KernelOp::Binary { op });
    match f {
        "relu" => u(UnaryOp::Relu),
        "neg" => u(UnaryOp::Neg),
        "exp" => u(UnaryOp::Exp),
        "log" => u(UnaryOp::Log),
        "sqrt" => u(UnaryOp::Sqrt),
        "rsqrt" => u(UnaryOp::Rsqrt),
        "abs" => u(UnaryOp::Abs),
        "tanh" => u(UnaryOp::Tanh),
        "sigmoid" => u(UnaryOp::Sigmoid),
        "reciprocal" => u(UnaryOp::Reciprocal),
        "erf" => u(UnaryOp::Erf),
        "convert" => u(UnaryOp::Copy),
        "add" => b(BinaryOp::Add),
        "sub" => b(BinaryOp::Sub),
        "mul" => b(BinaryOp::Mul),
        "div" => b(BinaryOp::Div),
        "maximum" => b(BinaryOp::Max),
        "minimum" => b(BinaryOp::Min),
        "pow" => b(BinaryOp::Pow),
        "eq" => b(BinaryOp::Eq),
        "ne" => b(BinaryOp::Ne),
        "lt" => b(BinaryOp::Lt),
        "le" => b(BinaryOp::Le),
        "gt" => b(BinaryOp::Gt),
        "ge" => b(BinaryOp::Ge),
        "select" => Some(KernelOp::Select),
        _ => None,
    }
}

/// One core's piece of a mesh value.
#[derive(Clone, Debug)]
struct Shard {
    core: (u32, u32),
    buf: BufId,
    /// The box of the logical tensor this core holds.
    region: IrRegion,
}

/// Distinct shard regions of a value, each with the indices of the shards holding it, in
/// order of first appearance; indexed by position so that the boxes overlapping a box are
/// found without scanning them all (a layout over thousands of cores has thousands).
struct ReplicaGroups {
    groups: Vec<(IrRegion, Vec<usize>)>,
    /// Per dim, the distinct (offset, size) intervals of the regions, sorted and disjoint; a
    /// region is one interval per dim (the boxes of a layout form such a grid). None when the
    /// regions are not such a grid: `overlapping` then scans.
    intervals: Option<Vec<Vec<(usize, usize)>>>,
    /// Group of each grid cell (per-dim interval indices).
    cells: HashMap<Vec<usize>, usize>,
}

impl ReplicaGroups {
    fn new(groups: Vec<(IrRegion, Vec<usize>)>) -> ReplicaGroups {
        let rank = groups.first().map_or(0, |g| g.0.offsets.len());
        let intervals: Vec<Vec<(usize, usize)>> = (0..rank)
            .map(|d| {
                let mut v: Vec<(usize, usize)> = groups.iter().map(|g| (g.0.offsets[d], g.0.sizes[d])).collect();
                v.sort_unstable();
                v.dedup();
                v
            })
            .collect();
        let disjoint = intervals.iter().all(|v| v.windows(2).all(|w| w[0].0 + w[0].1 <= w[1].0));
        let cells: HashMap<Vec<usize>, usize> = groups
            .iter()
            .enumerate()
            .map(|(g, (r, _))| ((0..rank).map(|d| intervals[d].binary_search(&(r.offsets[d], r.sizes[d])).unwrap_or(0)).collect(), g))
            .collect();
        let grid = disjoint && cells.len() == groups.len() && intervals.iter().map(Vec::len).product::<usize>() == groups.len();
        ReplicaGroups { groups, intervals: grid.then_some(intervals), cells }
    }

    /// The groups whose region overlaps `need`, in group order.
    fn overlapping(&self, need: &IrRegion) -> Vec<usize> {
        let Some(intervals) = &self.intervals else {
            return (0..self.groups.len()).filter(|&g| overlaps(need, &self.groups[g].0)).collect();
        };
        // Per dim, the range of intervals meeting need's extent.
        let mut ranges = Vec::with_capacity(intervals.len());
        for (d, v) in intervals.iter().enumerate() {
            let (lo, hi) = (need.offsets[d], need.offsets[d] + need.sizes[d]);
            let first = v.partition_point(|&(o, n)| o + n <= lo);
            let end = v.partition_point(|&(o, _)| o < hi);
            if first >= end {
                return Vec::new();
            }
            ranges.push(first..end);
        }
        let mut found = Vec::new();
        let mut cell: Vec<usize> = ranges.iter().map(|r| r.start).collect();
        'cells: loop {
            if let Some(&g) = self.cells.get(&cell) {
                found.push(g);
            }
            for d in (0..cell.len()).rev() {
                cell[d] += 1;
                if cell[d] < ranges[d].end {
                    continue 'cells;
                }
                cell[d] = ranges[d].start;
            }
            break;
        }
        found.sort_unstable();
        found
    }
}

/// Where the box a `d1.load` / `d1.reshard` takes starts in its operand (`offsets`), or 0.
fn box_offsets(op: &dojo_compiler::Op, rank: usize) -> Vec<usize> {
    match op.attr("offsets") {
        Some(_) => ints(op, "offsets"),
        None => vec![0; rank],
    }
}

/// `r` moved by `offsets` (a shard's box in the coordinates of the tensor its value is a box of).
fn shifted(r: &IrRegion, offsets: &[usize]) -> IrRegion {
    IrRegion { offsets: r.offsets.iter().zip(offsets).map(|(a, o)| a + o).collect(), sizes: r.sizes.clone() }
}

/// The boxes of an index space `dims` (row-major) that cover the linear range `a..b`, in
/// order, as (first linear index, offsets, sizes): each box's elements are a contiguous run
/// of the range (a partial row, whole rows, a partial row, recursively).
fn lead_boxes(dims: &[usize], a: usize, b: usize, out: &mut Vec<(usize, Vec<usize>, Vec<usize>)>) {
    if a >= b {
        return;
    }
    let inner_dims = dims.get(1..).unwrap_or(&[]);
    if inner_dims.is_empty() {
        out.push((a, vec![a], vec![b - a]));
        return;
    }
    let inner: usize = inner_dims.iter().product();
    // Part of one outer index: that index, and the boxes of the inner dims.
    let part = |o: usize, from: usize, to: usize, out: &mut Vec<(usize, Vec<usize>, Vec<usize>)>| {
        let mut sub = Vec::new();
        lead_boxes(inner_dims, from, to, &mut sub);
        out.extend(sub.into_iter().map(|(s, off, sz)| (o * inner + s, [vec![o], off].concat(), [vec![1], sz].concat())));
    };
    let mut x = a;
    if x % inner != 0 {
        let end = b.min((x / inner + 1) * inner);
        part(x / inner, x % inner, end - x / inner * inner, out);
        x = end;
    }
    let whole = (b - x) / inner;
    if whole > 0 {
        out.push((x, [vec![x / inner], vec![0; inner_dims.len()]].concat(), [vec![whole], inner_dims.to_vec()].concat()));
        x += whole * inner;
    }
    if x < b {
        part(x / inner, 0, b - x, out);
    }
}

/// Whether two boxes of the same rank share at least one element (no allocation).
fn overlaps(a: &IrRegion, b: &IrRegion) -> bool {
    (0..a.offsets.len()).all(|d| a.offsets[d].max(b.offsets[d]) < (a.offsets[d] + a.sizes[d]).min(b.offsets[d] + b.sizes[d]))
}

struct Emitter<'a> {
    func: &'a Func,
    program: Program,
    shards: HashMap<Value, Vec<Shard>>,
    /// `replica_groups` of values read by gathers (a value's shards never change).
    replicas: HashMap<Value, std::rc::Rc<ReplicaGroups>>,
    layouts: HashMap<Value, Layout>,
    last_use: Vec<Option<usize>>,
    /// Layouts name cores of the target's usable grid; buffers live on its sites.
    grid: UsableGrid,
}

impl<'a> Emitter<'a> {
    fn new(func: &'a Func, target: Target) -> Result<Emitter<'a>, PassError> {
        let grid = target.usable_grid();
        let mut program = Program::new(target);
        for t in func.arg_types() {
            let t = match t {
                dojo_compiler::Type::Tensor(t) => t,
                other => return Err(PassError::Invalid(format!("argument type {other} is not a tensor"))),
            };
            program.inputs.push(decl(t)?);
        }
        for v in &func.returns {
            let t = func.tensor(*v).ok_or(PassError::Invalid("a result is not a tensor".into()))?;
            program.outputs.push(decl(t)?);
        }
        let mut last_use = vec![None; func.value_types.len()];
        for (i, op) in func.ops.iter().enumerate() {
            // A store is emitted right where its operand is computed (see `run`): it does not
            // keep the operand alive.
            if op.name == "d1.store" {
                continue;
            }
            for v in &op.operands {
                last_use[v.index()] = Some(i);
            }
        }
        Ok(Emitter { func, program, shards: HashMap::new(), replicas: HashMap::new(), layouts: HashMap::new(), last_use, grid })
    }

    fn tensor(&self, v: Value) -> Result<TensorType, PassError> {
        self.func.tensor(v).cloned().ok_or_else(|| PassError::Invalid(format!("%{} is not a tensor", v.0)))
    }

    fn shards(&self, v: Value) -> Result<&[Shard], PassError> {
        self.shards
            .get(&v)
            .map(Vec::as_slice)
            .ok_or_else(|| PassError::Invalid(format!("%{} is not on the mesh (d1.load it first)", v.0)))
    }

    /// A `Convert` to the storage format of `rt`, with a new scale of the Program named by the
    /// op's `tensor` attribute, its bias from the type and its host input from `scale_input`.
    fn scale_for(&mut self, op: &dojo_compiler::Op, rt: &TensorType) -> Result<KernelOp, PassError> {
        let bias = match rt.elem {
            ElemType::CFloat(_, b) => b,
            _ => 127,
        };
        let name = op.attr("tensor").and_then(Attr::as_str).map_or_else(|| format!("%{}", op.result(0).0), str::to_string);
        let input = op.attr("scale_input").and_then(Attr::as_int).and_then(|i| usize::try_from(i).ok());
        self.program.scales.push(ScaleDecl { name, dtype: dtype(rt.elem)?, bias, input });
        Ok(KernelOp::Convert { scale: self.program.scales.len() - 1 })
    }

    /// The site of usable-grid core `core`.
    fn site(&self, core: (u32, u32)) -> Result<CoreId, PassError> {
        let (rows, cols) = self.grid.dims();
        self.grid.site(core).ok_or_else(|| {
            PassError::Invalid(format!(
                "core {core:?} is outside the usable {rows} x {cols} grid of target '{}' (layouts count cores of the mesh without the rows and columns of its disabled sites)",
                self.program.target.name
            ))
        })
    }

    /// Allocate one buffer per core of `layout` for value `v`.
    fn alloc(&mut self, v: Value, layout: &Layout) -> Result<(), PassError> {
        let t = self.tensor(v)?;
        layout.check(&t.shape).map_err(|e| PassError::Invalid(format!("%{}: {e}", v.0)))?;
        let dt = dtype(t.elem)?;
        let mut shards = Vec::with_capacity(layout.num_cores());
        for core in layout.cores() {
            let r = layout.shard(&t.shape, core);
            let buf = self.program.buffers.len();
            self.program.buffers.push(BufferDecl { core: self.site(core)?, shape: r.sizes.clone(), dtype: dt });
            self.program.instrs.push(Instr::Alloc { buf });
            shards.push(Shard { core, buf, region: r });
        }
        self.shards.insert(v, shards);
        self.layouts.insert(v, layout.clone());
        Ok(())
    }

    /// The buffer of `v` on `core` (operands of per-core ops share the result's block).
    fn buf_on(&self, v: Value, core: (u32, u32)) -> Result<BufId, PassError> {
        self.shard_on(v, core)?.map(|s| s.buf).ok_or_else(|| PassError::Invalid(format!("%{} has no shard on core {core:?}", v.0)))
    }

    /// The shard of `v` on `core`, if any: shards are in the row-major order of their
    /// layout's block (`alloc`).
    fn shard_on(&self, v: Value, core: (u32, u32)) -> Result<Option<&Shard>, PassError> {
        let shards = self.shards(v)?;
        let Some(l) = self.layouts.get(&v) else { return Ok(shards.iter().find(|s| s.core == core)) };
        let (r, c) = (core.0.wrapping_sub(l.origin.0), core.1.wrapping_sub(l.origin.1));
        if r >= l.grid.0 || c >= l.grid.1 {
            return Ok(None);
        }
        Ok(shards.get((r * l.grid.1 + c) as usize).filter(|s| s.core == core))
    }

    fn run(mut self) -> Result<Program, PassError> {
        let func = self.func;
        let host = host_values(func);
        // Return positions of every returned value.
        let mut positions: HashMap<Value, Vec<usize>> = HashMap::new();
        for (p, v) in func.returns.iter().enumerate() {
            positions.entry(*v).or_default().push(p);
        }
        for (p, v) in func.returns.iter().enumerate() {
            if v.index() < func.num_args {
                self.program.instrs.push(Instr::HostCopy { input: v.index(), output: p });
            }
        }
        // Results go to the host as soon as they are computed, so their SRAM is free for the
        // rest of the Program once nothing else reads them (a training forward returns its
        // saved activations: kept on chip to the end they would pile up). A result stored in
        // parts (`dim`: a matmul's row blocks) stores each part where the next one is computed
        // (if later), and the part lives until then: a DIP works in program order, and a store
        // waiting for its part's compute would hold up the loads feeding the next part.
        // Keyed by the value after which to store: (value, output position, where the value
        // starts in the output).
        let mut stores: HashMap<Value, Vec<(Value, usize, Vec<usize>)>> = HashMap::new();
        let def_ops = func.def_ops();
        for op in func.ops.iter().filter(|op| op.name == "d1.store") {
            let rank = self.tensor(op.result(0))?.rank();
            let dim = op.attr("dim").and_then(Attr::as_int).map(|d| d as usize);
            let mut at = vec![0; rank];
            for (j, &v) in op.operands.iter().enumerate() {
                let after = match op.operands.get(j + 1) {
                    Some(&w) if def_ops[w.index()] > def_ops[v.index()] => w,
                    _ => v,
                };
                for &p in positions.get(&op.result(0)).map(Vec::as_slice).unwrap_or(&[]) {
                    stores.entry(after).or_default().push((v, p, at.clone()));
                }
                if after != v {
                    self.last_use[v.index()] = self.last_use[v.index()].max(def_ops[after.index()]);
                }
                if let Some(d) = dim {
                    at[d] += self.tensor(v)?.shape[d];
                }
            }
        }
        for (i, op) in func.ops.iter().enumerate() {
            let r = op.result(0);
            let first_instr = self.program.instrs.len();
            let mut reused: Option<Value> = None;
            match op.name.as_str() {
                // Emitted with its operand (below).
                "d1.store" => {}
                "d1.load" => {
                    let l = layout_of(op).map_err(PassError::Invalid)?;
                    let input = op.operands[0].index();
                    if !host.get(op.operands[0].index()).copied().unwrap_or(false) || input >= func.num_args {
                        return Err(PassError::Invalid("d1.load takes a function argument".into()));
                    }
                    self.alloc(r, &l)?;
                    // Where the loaded box starts in the host tensor (a panel) or 0.
                    let offsets = box_offsets(op, self.tensor(r)?.rank());
                    // One load per distinct box; its replicas copy it over the mesh.
                    let groups = self.replica_groups(r)?;
                    let shards = self.shards(r)?.to_vec();
                    let mut trees = Vec::new();
                    for (_, members) in groups.groups.iter() {
                        let root = &shards[members[0]];
                        self.program.instrs.push(Instr::Load {
                            input,
                            src: region_of(&shifted(&root.region, &offsets)),
                            buf: root.buf,
                            dst: Region::full(&root.region.sizes),
                        });
                        trees.push((members.clone(), 0));
                    }
                    self.fill_replicas(&shards, &trees);
                }
                "d1.reshard" => {
                    let l = layout_of(op).map_err(PassError::Invalid)?;
                    self.alloc(r, &l)?;
                    let offsets = box_offsets(op, self.tensor(r)?.rank());
                    self.reshard(op.operands[0], r, &offsets)?;
                }
                "d1.fill" => {
                    let l = layout_of(op).map_err(PassError::Invalid)?;
                    let value = op.attr("value").and_then(Attr::as_float).unwrap_or(0.0) as f32;
                    self.alloc(r, &l)?;
                    for s in self.shards(r)?.to_vec() {
                        self.program.instrs.push(Instr::Fill { buf: s.buf, value });
                    }
                }
                "d1.matmul" => {
                    let l = layout_of(op).map_err(PassError::Invalid)?;
                    // Operands: a, b, the accumulator if any, the epilogue's extra operands.
                    let expr = matmul_epilogue(op).map_err(PassError::Invalid)?;
                    let extras = expr.as_ref().map_or(0, epilogue_extras);
                    let epilogue = match expr {
                        Some(e) => match fused_kernel(&e.to_string()).map_err(PassError::Invalid)? {
                            KernelOp::Fused { steps } => steps,
                            _ => unreachable!("fused_kernel makes a Fused kernel"),
                        },
                        None => vec![],
                    };
                    let acc = (op.operands.len() == 3 + extras).then(|| op.operands[2]);
                    match acc {
                        Some(a) if self.last_use[a.index()] == Some(i) && !positions.contains_key(&a) => {
                            // Accumulate in place: the result takes over the accumulator's buffers.
                            let shards = self.shards.remove(&a).ok_or_else(|| PassError::Invalid(format!("%{} is not on the mesh", a.0)))?;
                            self.shards.insert(r, shards);
                            self.layouts.insert(r, l.clone());
                            reused = Some(a);
                        }
                        Some(a) => {
                            self.alloc(r, &l)?;
                            for s in self.shards(r)?.to_vec() {
                                let src = self.buf_on(a, s.core)?;
                                let full = Region::full(&s.region.sizes);
                                self.program.instrs.push(Instr::Copy { src, src_region: full.clone(), dst: s.buf, dst_region: full });
                            }
                        }
                        None => self.alloc(r, &l)?,
                    }
                    for s in self.shards(r)?.to_vec() {
                        let mut inputs = vec![self.buf_on(op.operands[0], s.core)?, self.buf_on(op.operands[1], s.core)?];
                        for v in &op.operands[op.operands.len() - extras..] {
                            inputs.push(self.buf_on(*v, s.core)?);
                        }
                        self.program.instrs.push(Instr::Kernel {
                            op: KernelOp::MatMul { accumulate: acc.is_some(), epilogue: epilogue.clone() },
                            inputs,
                            output: s.buf,
                        });
                    }
                }
                "d1.map" | "d1.reduce_sum" | "d1.reduce_max" | "d1.transpose" | "d1.reshape" => {
                    let l = layout_of(op).map_err(PassError::Invalid)?;
                    let kernel = match op.name.as_str() {
                        "d1.map" if op.attr("fn").and_then(Attr::as_str) == Some("convert") && dtype(self.tensor(r)?.elem)?.storage_format().is_some() => {
                            self.scale_for(op, &self.tensor(r)?)?
                        }
                        "d1.map" if op.attr("fn").and_then(Attr::as_str) == Some("fused") => {
                            fused_kernel(op.attr("expr").and_then(Attr::as_str).unwrap_or("")).map_err(PassError::Invalid)?
                        }
                        "d1.map" => {
                            let f = op.attr("fn").and_then(Attr::as_str).unwrap_or("");
                            kernel_for(f).ok_or_else(|| PassError::Invalid(format!("no kernel for map function '{f}'")))?
                        }
                        "d1.reduce_sum" => KernelOp::ReduceSum {
                            dims: op.attr("dims").and_then(Attr::as_ints).unwrap_or(&[]).iter().map(|&d| d as usize).collect(),
                        },
                        "d1.reduce_max" => KernelOp::ReduceMax {
                            dims: op.attr("dims").and_then(Attr::as_ints).unwrap_or(&[]).iter().map(|&d| d as usize).collect(),
                        },
                        "d1.transpose" => KernelOp::Transpose {
                            perm: op.attr("perm").and_then(Attr::as_ints).unwrap_or(&[]).iter().map(|&d| d as usize).collect(),
                        },
                        _ => KernelOp::Reshape,
                    };
                    self.alloc(r, &l)?;
                    for s in self.shards(r)?.to_vec() {
                        let inputs = op.operands.iter().map(|v| self.buf_on(*v, s.core)).collect::<Result<Vec<_>, _>>()?;
                        self.program.instrs.push(Instr::Kernel { op: kernel.clone(), inputs, output: s.buf });
                    }
                }
                "d1.embedding" | "d1.embedding_grad" => {
                    let l = layout_of(op).map_err(PassError::Invalid)?;
                    let skip = op.attr("padding_idx").and_then(Attr::as_int).and_then(|p| usize::try_from(p).ok());
                    self.alloc(r, &l)?;
                    for s in self.shards(r)?.to_vec() {
                        let kernel = if op.attr("vocab_parts").is_some() {
                            let table = self.shard_on(op.operands[0], s.core)?.ok_or_else(|| PassError::Invalid(format!("%{}: no table rows on core {:?}", op.operands[0].0, s.core)))?;
                            KernelOp::EmbeddingPart { offset: table.region.offsets[0], total: self.tensor(op.operands[0])?.shape[0] }
                        } else if op.name == "d1.embedding" {
                            KernelOp::Embedding
                        } else {
                            KernelOp::EmbeddingGrad { offset: s.region.offsets[0], skip }
                        };
                        let inputs = vec![self.buf_on(op.operands[0], s.core)?, self.buf_on(op.operands[1], s.core)?];
                        self.program.instrs.push(Instr::Kernel { op: kernel, inputs, output: s.buf });
                    }
                }
                "d1.iota" => {
                    let l = layout_of(op).map_err(PassError::Invalid)?;
                    let dim = op.attr("dim").and_then(Attr::as_int).unwrap_or(0) as usize;
                    self.alloc(r, &l)?;
                    for s in self.shards(r)?.to_vec() {
                        self.program.instrs.push(Instr::Kernel {
                            op: KernelOp::Iota { dim, start: s.region.offsets[dim] },
                            inputs: vec![],
                            output: s.buf,
                        });
                    }
                }
                "d1.random" => {
                    let l = layout_of(op).map_err(PassError::Invalid)?;
                    let stream = op.attr("stream").and_then(Attr::as_int).unwrap_or(0) as u64;
                    let shape = self.tensor(r)?.shape;
                    self.alloc(r, &l)?;
                    for s in self.shards(r)?.to_vec() {
                        self.program.instrs.push(Instr::Kernel {
                            op: KernelOp::Random { stream, offsets: s.region.offsets.clone(), shape: shape.clone() },
                            inputs: vec![],
                            output: s.buf,
                        });
                    }
                }
                "d1.slice" | "d1.pad" | "d1.concat" => {
                    let l = layout_of(op).map_err(PassError::Invalid)?;
                    self.alloc(r, &l)?;
                    match op.name.as_str() {
                        "d1.slice" => self.slice(op, r)?,
                        "d1.pad" => self.pad(op, r)?,
                        _ => self.concat(op, r)?,
                    }
                }
                other => return Err(PassError::Invalid(format!("cannot emit '{other}': lower to d1 first"))),
            }
            // Free what dies here (and results nobody uses, parts stored here).
            let mut dying: Vec<Value> = op.operands.iter().copied().filter(|v| self.last_use[v.index()] == Some(i)).collect();
            if self.last_use[r.index()].is_none() && op.name != "d1.store" {
                dying.push(r);
            }
            for (v, p, at) in stores.remove(&r).unwrap_or_default() {
                self.store(v, p, &at)?;
                if v != r && self.last_use[v.index()] == Some(i) && !dying.contains(&v) {
                    dying.push(v);
                }
            }
            dying.dedup();
            for v in dying {
                if Some(v) == reused || host[v.index()] {
                    continue;
                }
                self.replicas.remove(&v);
                if let Some(shards) = self.shards.remove(&v) {
                    for s in shards {
                        self.program.instrs.push(Instr::Free { buf: s.buf });
                    }
                }
            }
            // Provenance for the profile's per-op roofline: this op's instructions.
            self.program.label_since(first_instr, format!("{} %{}", op.name, r.0));
        }
        Ok(self.program)
    }

    /// Stores mesh value `v` into host output `p` starting at `at`: one Store per distinct
    /// shard (replicas hold the same data).
    fn store(&mut self, v: Value, p: usize, at: &[usize]) -> Result<(), PassError> {
        let groups = self.replica_groups(v)?;
        let shards = self.shards(v)?;
        // A value stored into an output that splits its first dim (a reshape only going to
        // the host, `[4096, n]` into `[8, 512, n]`): each shard's rows as the boxes of the
        // output's leading dims they cover, in row-major order.
        let (vs, out) = (&self.tensor(v)?.shape, &self.program.outputs[p].shape);
        let lead = (vs != out && at.iter().all(|&x| x == 0)).then(|| dojo_runtime::merged_lead(vs, out)).flatten();
        let mut stores = Vec::new();
        for (region, members) in &groups.groups {
            let buf = shards[members[0]].buf;
            let Some(q) = lead else {
                stores.push(Instr::Store { buf, src: Region::full(&region.sizes), output: p, dst: region_of(&shifted(region, at)) });
                continue;
            };
            let (a, rest) = (region.offsets[0], &region.sizes[1..]);
            let mut boxes = Vec::new();
            lead_boxes(&out[..q], a, a + region.sizes[0], &mut boxes);
            for (x, offsets, sizes) in boxes {
                let src = Region::new([vec![x - a], vec![0; rest.len()]].concat(), [vec![sizes.iter().product()], rest.to_vec()].concat());
                let dst = Region::new([offsets, region.offsets[1..].to_vec()].concat(), [sizes, rest.to_vec()].concat());
                stores.push(Instr::Store { buf, src, output: p, dst });
            }
        }
        self.program.instrs.extend(stores);
        Ok(())
    }

    /// Copies that lay out `dst` (already allocated) from `src`, where `dst` is the box of
    /// `src` starting at `offsets`.
    /// Replicas of one box gather it once (the replica nearest to the source shards) and pass
    /// it on: [`Self::fill_replicas`].
    fn reshard(&mut self, src: Value, dst: Value, offsets: &[usize]) -> Result<(), PassError> {
        let shards = self.shards(dst)?.to_vec();
        let src_groups = self.replica_groups(src)?;
        let src_cores: Vec<Vec<(u32, u32)>> = {
            let ss = self.shards(src)?;
            src_groups.groups.iter().map(|(_, m)| m.iter().map(|&k| ss[k].core).collect()).collect()
        };
        let dst_groups = self.replica_groups(dst)?;
        let mut trees = Vec::new();
        for (region, members) in dst_groups.groups.iter() {
            // What these cores need, in the source's coordinates.
            let need = shifted(region, offsets);
            let boxes = src_groups.overlapping(&need);
            // The replica that holds none of the source boxes it needs (a copy on its own core
            // would queue behind that core's compute; the mesh's copy engines run beside it),
            // then the fewest hops (in usable-grid coordinates) to the nearest holder of each.
            let cost = |core: (u32, u32)| -> (bool, u32) {
                let holders = boxes.iter().map(|&g| &src_cores[g]);
                let local = holders.clone().any(|h| h.contains(&core));
                let hops = holders.map(|h| h.iter().map(|h| h.0.abs_diff(core.0) + h.1.abs_diff(core.1)).min().unwrap_or(0)).sum();
                (local, hops)
            };
            let root = (0..members.len()).min_by_key(|&i| cost(shards[members[i]].core)).unwrap_or(0);
            let d = &shards[members[root]];
            let at = vec![0; need.sizes.len()];
            self.gather_into(src, &need, d.buf, d.core, &at)?;
            trees.push((members.clone(), root));
        }
        self.fill_replicas(&shards, &trees);
        Ok(())
    }

    /// For each `(members, root)` (the replicas of one box, `members[root]` filled), copies the
    /// box to the other members by recursive halving over the members in mesh order: each
    /// round, every segment's holder sends the whole box to the nearest member of the
    /// segment's other half, which then holds that half. n replicas take log2(n) rounds, and a
    /// round's transfers stay inside disjoint segments (on a row or column of the mesh they
    /// share no link), instead of n transfers out of the same few cores. All groups advance
    /// round by round together, after every root is filled: a copy engine works in program
    /// order, so a copy that must wait for its round would hold up copies behind it.
    fn fill_replicas(&mut self, shards: &[Shard], trees: &[(Vec<usize>, usize)]) {
        let mut segments = Vec::new();
        let mut orders = Vec::new();
        for (g, (members, root)) in trees.iter().enumerate() {
            let mut order: Vec<usize> = members.clone();
            order.sort_by_key(|&k| shards[k].core);
            if let Some(r) = order.iter().position(|&k| k == members[*root]) {
                segments.push((g, 0, order.len(), r));
            }
            orders.push(order);
        }
        while !segments.is_empty() {
            let mut next = Vec::new();
            for (g, lo, hi, holder) in segments {
                if hi - lo <= 1 {
                    continue;
                }
                let mid = lo + (hi - lo) / 2;
                let (mine, other, receiver) = if holder < mid { ((lo, mid), (mid, hi), mid) } else { ((mid, hi), (lo, mid), mid - 1) };
                let (from, to) = (&shards[orders[g][holder]], &shards[orders[g][receiver]]);
                let full = Region::full(&to.region.sizes);
                self.program.instrs.push(Instr::Copy { src: from.buf, src_region: full.clone(), dst: to.buf, dst_region: full });
                next.push((g, mine.0, mine.1, holder));
                next.push((g, other.0, other.1, receiver));
            }
            segments = next;
        }
    }

    /// Copies of box `need` of `src` (in its coordinates) into buffer `buf` on `core`, placed
    /// at `at` in the buffer: for each distinct source shard that overlaps, the overlap from
    /// its nearest replica.
    fn gather_into(&mut self, src: Value, need: &IrRegion, buf: BufId, core: (u32, u32), at: &[usize]) -> Result<(), PassError> {
        let dc = self.site(core)?;
        let groups = self.replica_groups(src)?;
        let shards = self.shards(src)?;
        let target = &self.program.target;
        let mut copies = Vec::new();
        for g in groups.overlapping(need) {
            let (region, members) = &groups.groups[g];
            let Some(inter) = need.intersect(region) else { continue };
            // The nearest replica (the first of equally near ones, in shard order).
            let from = members
                .iter()
                .map(|&k| &shards[k])
                .min_by_key(|r| self.grid.site(r.core).map_or(u32::MAX, |s| target.hops(&s, &dc)))
                .ok_or_else(|| PassError::Invalid(format!("%{}: empty replica group", src.0)))?;
            let rel = inter.relative_to(need);
            copies.push(Instr::Copy {
                src: from.buf,
                src_region: region_of(&inter.relative_to(region)),
                dst: buf,
                dst_region: Region::new(rel.offsets.iter().zip(at).map(|(a, b)| a + b).collect(), rel.sizes),
            });
        }
        self.program.instrs.extend(copies);
        Ok(())
    }

    /// The distinct regions of `src`'s shards in order of first appearance, each with the
    /// indices of the shards holding it (its replicas), computed once per value.
    fn replica_groups(&mut self, src: Value) -> Result<std::rc::Rc<ReplicaGroups>, PassError> {
        if let Some(g) = self.replicas.get(&src) {
            return Ok(g.clone());
        }
        let mut index: HashMap<&IrRegion, usize> = HashMap::new();
        let mut groups: Vec<(IrRegion, Vec<usize>)> = Vec::new();
        for (k, s) in self.shards(src)?.iter().enumerate() {
            match index.get(&s.region) {
                Some(&g) => groups[g].1.push(k),
                None => {
                    index.insert(&s.region, groups.len());
                    groups.push((s.region.clone(), vec![k]));
                }
            }
        }
        let groups = std::rc::Rc::new(ReplicaGroups::new(groups));
        self.replicas.insert(src, groups.clone());
        Ok(groups)
    }

    /// Box `need` of `src` as a buffer on `core`: `(buffer, offsets of need in it, staged)`.
    /// A shard on that core holding all of it is used in place; otherwise the box is copied
    /// into a new staging buffer there, which the caller frees.
    fn local_box(&mut self, src: Value, need: &IrRegion, core: (u32, u32)) -> Result<(BufId, Vec<usize>, bool), PassError> {
        if let Some(s) = self.shard_on(src, core)?.filter(|s| need.intersect(&s.region).as_ref() == Some(need)) {
            return Ok((s.buf, need.relative_to(&s.region).offsets, false));
        }
        let dt = dtype(self.tensor(src)?.elem)?;
        let buf = self.program.buffers.len();
        self.program.buffers.push(BufferDecl { core: self.site(core)?, shape: need.sizes.clone(), dtype: dt });
        self.program.instrs.push(Instr::Alloc { buf });
        self.gather_into(src, need, buf, core, &vec![0; need.sizes.len()])?;
        Ok((buf, vec![0; need.sizes.len()], true))
    }

    /// `d1.slice`: each result shard reads the (strided) window of the operand it needs.
    fn slice(&mut self, op: &dojo_compiler::Op, r: Value) -> Result<(), PassError> {
        let (offsets, steps) = (ints(op, "offsets"), ints(op, "strides"));
        for d in self.shards(r)?.to_vec() {
            let need = IrRegion {
                offsets: (0..offsets.len()).map(|k| offsets[k] + d.region.offsets[k] * steps[k]).collect(),
                sizes: (0..offsets.len()).map(|k| (d.region.sizes[k] - 1) * steps[k] + 1).collect(),
            };
            let (buf, at, staged) = self.local_box(op.operands[0], &need, d.core)?;
            self.program.instrs.push(Instr::Kernel {
                op: KernelOp::Slice { offsets: at, strides: steps.clone() },
                inputs: vec![buf],
                output: d.buf,
            });
            if staged {
                self.program.instrs.push(Instr::Free { buf });
            }
        }
        Ok(())
    }

    /// `d1.pad`: each result shard places the operand elements that land in it.
    fn pad(&mut self, op: &dojo_compiler::Op, r: Value) -> Result<(), PassError> {
        let (low, interior) = (ints(op, "low"), ints(op, "interior"));
        let value = op.attr("value").and_then(Attr::as_float).unwrap_or(0.0) as f32;
        let n = self.tensor(op.operands[0])?.shape;
        for d in self.shards(r)?.to_vec() {
            // Operand indices i with low + i*step inside the shard, per dim.
            let mut need = IrRegion { offsets: vec![], sizes: vec![] };
            let mut place = Vec::new();
            for k in 0..n.len() {
                let step = interior[k] + 1;
                let (lo, hi) = (d.region.offsets[k], d.region.offsets[k] + d.region.sizes[k]);
                let first = lo.saturating_sub(low[k]).div_ceil(step);
                let end = if hi <= low[k] { 0 } else { ((hi - 1 - low[k]) / step + 1).min(n[k]) };
                if first >= end {
                    need.sizes.clear();
                    break;
                }
                need.offsets.push(first);
                need.sizes.push(end - first);
                place.push(low[k] + first * step - lo);
            }
            if need.sizes.len() != n.len() {
                self.program.instrs.push(Instr::Fill { buf: d.buf, value });
                continue;
            }
            let (buf, at, staged) = self.local_box(op.operands[0], &need, d.core)?;
            let input = if at.iter().all(|&x| x == 0) && self.program.buffers[buf].shape == need.sizes {
                buf
            } else {
                // The window is part of a larger local shard: cut it out first.
                let w = self.program.buffers.len();
                let dt = self.program.buffers[buf].dtype;
                self.program.buffers.push(BufferDecl { core: self.site(d.core)?, shape: need.sizes.clone(), dtype: dt });
                self.program.instrs.push(Instr::Alloc { buf: w });
                self.program.instrs.push(Instr::Kernel {
                    op: KernelOp::Slice { offsets: at, strides: vec![1; n.len()] },
                    inputs: vec![buf],
                    output: w,
                });
                w
            };
            self.program.instrs.push(Instr::Kernel {
                op: KernelOp::Pad { low: place, interior: interior.clone(), value },
                inputs: vec![input],
                output: d.buf,
            });
            if input != buf {
                self.program.instrs.push(Instr::Free { buf: input });
            }
            if staged {
                self.program.instrs.push(Instr::Free { buf });
            }
        }
        Ok(())
    }

    /// `d1.concat`: each result shard copies in the parts of the operands that overlap it,
    /// shard by shard (so that, in program order, the operands' copies alternate: a join of
    /// parts on different chips moves from all of them at once, not one chip after another).
    fn concat(&mut self, op: &dojo_compiler::Op, r: Value) -> Result<(), PassError> {
        let dim = op.attr("dim").and_then(Attr::as_int).unwrap_or(0) as usize;
        let mut parts = Vec::new();
        let mut start = 0;
        for &x in &op.operands {
            let mut part = IrRegion::full(&self.tensor(x)?.shape);
            part.offsets[dim] = start;
            start += part.sizes[dim];
            parts.push((x, part));
        }
        // Each operand's pieces (in the result's shard order), then taken in turns.
        let mut pieces: Vec<Vec<_>> = vec![Vec::new(); parts.len()];
        for d in self.shards(r)?.to_vec() {
            for (k, (_, part)) in parts.iter().enumerate() {
                let Some(inter) = d.region.intersect(part) else { continue };
                let at = inter.relative_to(&d.region).offsets;
                let mut need = inter;
                need.offsets[dim] -= part.offsets[dim];
                pieces[k].push((need, d.buf, d.core.clone(), at));
            }
        }
        let most = pieces.iter().map(Vec::len).max().unwrap_or(0);
        for i in 0..most {
            for (k, (x, _)) in parts.iter().enumerate() {
                if let Some((need, buf, core, at)) = pieces[k].get(i) {
                    self.gather_into(*x, need, *buf, core.clone(), at)?;
                }
            }
        }
        Ok(())
    }
}

fn ints(op: &dojo_compiler::Op, name: &str) -> Vec<usize> {
    op.attr(name).and_then(Attr::as_ints).unwrap_or(&[]).iter().map(|&x| x as usize).collect()
}
