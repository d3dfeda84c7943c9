//! `lower-to-d1`: graph-level `dojo` IR to mesh-level `d1` IR for one target (`mesh=` option,
//! a runtime preset such as `d1` or `d1:4x4`).
//!
//! Placement (first version, per op; the global planner is future work):
//! - Layouts count cores of the target's usable grid (`Target::usable_grid`: the mesh without
//!   the rows and columns holding harvested sites, so no block contains one, across chips
//!   too); emission maps them to sites.
//! - A tensor's default layout splits its last two dims over a block of cores, rows over mesh
//!   rows and columns over mesh columns, with shards of at least [`MIN_SHARD_EDGE`] elements a
//!   side (any edge when that leaves shards above [`FOLLOW_MAX_BYTES`]), within a 16 x 16
//!   block ([`MAX_BLOCK_EDGE`]); on a multi-chip target a tensor whose
//!   shards there would exceed [`MULTI_CHIP_MIN_SHARD_BYTES`], or a matmul result whose
//!   compute there would take [`MULTI_CHIP_MIN_MATMUL_S`] or more, spreads over the whole
//!   usable grid (several chips: chip-edge links carry its traffic); in a part's block of
//!   chips (split-batch), over the block, from [`PART_MIN_MATMUL_S`].
//! - On a multi-chip target, a value whose windows a concat spreading over the chips joins (a
//!   convolution's input, its taps) spreads over the dims no window cuts when it is computed
//!   (`Lowering::window_roots`), so the taps and the concat are local.
//! - Elementwise ops run where their first full-size mesh operand lives; the other operands
//!   are resharded to match (broadcast operands are replicated where needed).
//! - A batched matmul splits its batch over mesh rows (and its longer result dim over columns)
//!   when that takes more cores than splitting its rows and columns (`Lowering::batch_split`).
//! - `dojo.matmul` is SUMMA on the result's 2D block: in each of `S` steps every core receives
//!   its row block of a `K/S`-column slice of `a` and its column block of the matching slice
//!   of `b` (explicit `d1.reshard` ops: row and column multicasts) and accumulates locally.
//!   `S` is the fewest steps whose per-core working set fits half of the SRAM the operands
//!   leave free. When the rows x columns split needs several steps, the result's rows split
//!   over every core of the block instead (`b` whole on each) if that takes at least as many
//!   cores and fewer steps (a long contraction against a narrow `b`). A result that only
//!   goes to the host may be computed in row blocks, each its own SUMMA reusing the first
//!   block's panels of `b` (or, when one block does not fit SRAM and `b` is on the host,
//!   loading its own again), so that a block's store overlaps the next block's compute
//!   (`row_blocks`); `d1.store {dim}` then takes the blocks.
//! - Reductions over split dims reduce locally, gather the partials along the mesh axis to the
//!   first row/column, and reduce again (over both axes: all at once, or columns then rows when
//!   all partials would take more than [`FOLLOW_MAX_BYTES`] on one core).
//! - Constants are never moved: they are filled where they are needed.
//!
//! Function arguments and results stay on the host: `d1.load` brings arguments onto the mesh
//! on first use, `d1.store` returns results. A matmul operand from the host comes panel by
//! panel; so does the 2D transpose of a large argument that only matmuls take as `b`
//! (`nn.Linear`'s `weight.t()`, [`Val::HostT`]): each panel loads its box of the argument and
//! transposes it on every core, so a weight larger than the mesh's SRAM streams from the host.
//!
//! `plan=naive` ([`Plan::Naive`]) is the baseline the default plan is measured against: every
//! op's result row-split over all cores of the largest block (`Layout` split [`ALL`]), its
//! operands resharded to what the op needs, with no choice of layouts by cost (see
//! [`Plan::Naive`]).

use dojo_compiler::dialect::{broadcast_shapes, map_arity, matmul_epilogue, COMPARE};
use dojo_compiler::layout::{chunk, reshape_carriable_dims, reshape_is_local, ALL, COLS, NONE, ROWS};
use dojo_compiler::{attr, Attr, ElemType, Func, Layout, Module, Op, Pass, PassError, Region, TensorType, Type, Value};
use dojo_runtime::roofline::{core_flops_per_s, link_bytes_per_s};
use dojo_runtime::{DType, KernelOp, Target};
use std::collections::HashMap;

/// The smallest shard edge the default placement makes: the matrix units work on 8x8 tiles
/// (a matmul computing on the FP32 SIMD unit may split its rows thinner, `matmul_row_edge`).
pub const MIN_SHARD_EDGE: usize = 8;
/// Shards at least this large go to the least loaded block of their size (see
/// `Lowering::block_origin`); smaller ones stay at the corner of the default block.
pub const SPREAD_MIN_BYTES: u64 = 32 * 1024;

/// Largest shard a data-movement result keeps its operand's layout for when the default
/// placement would spread it thinner (an eighth of a core's usable SRAM).
pub const FOLLOW_MAX_BYTES: u64 = 144 * 1024;
/// A transposed weight ([`Val::HostT`]) streams from the host when its shards at the default
/// placement would be larger than this (a quarter of a core's usable SRAM); a smaller one is
/// loaded whole and transposed where it lies, each core a part: streamed, every core of the
/// matmul transposes whole panels just before it (resnet50 b2 inference on `tile`, whose 8 MB
/// fc weight takes 32 KiB per core: 0.941 ms streamed, 0.9385 not).
pub const STREAM_T_MIN_SHARD_BYTES: u64 = 288 * 1024;
/// A transposed weight also streams, whatever its size, when every matmul taking it has at
/// least this many rows: the panels' local transposes then cost little beside the matmul,
/// and loading the weight whole, transposing it and moving it into panels sat on the
/// critical path before each of BERT's linear layers (its encoder layer on `d1`, 128 tokens:
/// 164.5 -> 140.0 us). resnet50's fc (2 or 32 rows) keeps the threshold above.
pub const STREAM_T_MIN_ROWS: usize = 64;
/// The largest block edge the default placement uses.
pub const MAX_BLOCK_EDGE: u32 = 16;
/// The largest embedding table (bytes) a lookup on one block of the default placement (a
/// chip's area) holds: a quarter of each core's usable SRAM on `MAX_BLOCK_EDGE`² cores (see
/// `Lowering::embedding_parts`).
pub fn block_table_max_bytes(target: &Target) -> u64 {
    u64::from(MAX_BLOCK_EDGE * MAX_BLOCK_EDGE) * (target.usable_sram_bytes() / 4)
}
/// Compute time on the default block from which a matmul's result spreads over the whole
/// usable grid of a multi-chip target (see `Lowering::matmul`).
pub const MULTI_CHIP_MIN_MATMUL_S: f64 = 100e-6;
/// [`MULTI_CHIP_MIN_MATMUL_S`] in a part's area (split-batch's `dojo.part_chips`: a few
/// neighbouring chips, or a rectangle of the grid, see `Lowering::areas`; not the whole grid).
/// Measured on GPT-2 (1000 words) at batch 8, 1 x 2 chips per part (old simulator): seq 512
/// inference 4.387 ms at 100 us, 4.084 at 30, 4.241 at 20; seq 128 1.748, 1.381, 1.252. With
/// the parts on rectangles, GPT-2 124M at batch 8 on a tile: inference 3.378 ms at 30 us,
/// 3.028 at 20 (the same at 15 and 10), training forward 3.922, 3.889; GPT-2 (1000 words,
/// seq 128) inference 1.037, 0.852 (0.843 at 10). resnet50's convolutions stay below it down
/// to 15 us; at 10 us they spread (batch 8 training forward 1.173 -> 1.187 ms).
pub const PART_MIN_MATMUL_S: f64 = 20e-6;
/// Compute time on the default block from which a matmul on the FP32 SIMD unit splits its
/// result's rows below [`MIN_SHARD_EDGE`] (`matmul_row_edge`); a shorter one's time goes to
/// latency, and thinner rows would only multicast its operands to more cores.
pub const THIN_ROWS_MIN_MATMUL_S: f64 = 5e-6;
/// Shard size on the default block from which a tensor spreads over the whole usable grid
/// (more chips on a multi-chip target; see `Lowering::caps`).
pub const MULTI_CHIP_MIN_SHARD_BYTES: u64 = 64 * 1024;

pub struct LowerToD1 {
    pub mesh: String,
    pub plan: Plan,
}

/// How `lower-to-d1` places ops (`plan=` option).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Plan {
    /// The placement of the module doc.
    #[default]
    Default,
    /// The naive baseline (issue 5): every op's result row-split over all cores of the block
    /// the default placement would give it (the largest block, or the usable grid on a
    /// multi-chip target: `caps`): split [`ALL`] on its "rows", the leading dim (any but the
    /// last, the outermost on ties) giving the most cores, on as many cores as that dim has
    /// elements (at most the block, a whole number of block rows beyond one row); a rank-1
    /// tensor splits its only dim. Operands are resharded to whatever the op needs; no layout is chosen by cost, no
    /// SUMMA block, no row-block stores, no spreading of narrow blocks: a matmul is row-split
    /// `a` times replicated `b` (in K steps that fit SRAM, as the default plan; a batched
    /// matmul with more batches than rows is split by batch, `a` and `b` with it), a transpose
    /// first reshards its operand so that its result is row-split, data movement is computed on
    /// its result's row split. Exceptions, where the row split cannot work: `embedding` and
    /// `embedding_grad` split D (the table's columns) over all cores (row-split ids would need
    /// the whole table on every core); a reshape that cannot carry the row split locally takes
    /// a split dim pair with a chunk count dividing both sizes (or one core); a reduction over
    /// the split dim reduces locally and gathers the partials on one core.
    Naive,
}

impl Plan {
    pub fn parse(s: &str) -> Result<Plan, String> {
        match s {
            "default" => Ok(Plan::Default),
            "naive" => Ok(Plan::Naive),
            other => Err(format!("unknown plan '{other}'; plans: default, naive")),
        }
    }
}

impl Pass for LowerToD1 {
    fn name(&self) -> &'static str {
        "lower-to-d1"
    }

    fn run(&self, module: &mut Module) -> Result<(), PassError> {
        let target = Target::preset(&self.mesh).map_err(|e| PassError::Invalid(e.to_string()))?;
        for func in &mut module.funcs {
            *func = Lowering::new(func, &target, self.plan)?.run()?;
        }
        module.attrs.retain(|(k, _)| k != "dojo.mesh");
        module.attrs.push(attr("dojo.mesh", Attr::Str(self.mesh.clone())));
        module.attrs.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(())
    }
}

/// Where a graph-level value is during lowering.
#[derive(Clone, Debug)]
enum Val {
    /// A function argument on the host (the new function's argument).
    Host(Value),
    /// A splat constant, materialized wherever it is used.
    Const(f64, TensorType),
    /// A value on the mesh.
    Mesh(Value),
    /// A result already stored to the host: the `d1.store` of its parts (a matmul computed in
    /// row blocks, see `Lowering::matmul`; a join of split-batch's parts), or of the operand
    /// of a reshape splitting its first dim. Only function results are lowered so.
    Stored(Value),
    /// The transpose of a 2D function argument on the host that only matmuls take as `b`
    /// (`nn.Linear`'s `weight.t()`), larger than [`STREAM_T_MIN_SHARD_BYTES`] per core at its
    /// default placement: not loaded whole, each matmul step loads its panel's box
    /// of the argument and transposes it where it lands (`Lowering::panel`), so a weight
    /// larger than the mesh's SRAM streams from the host (VGG-19's 411 MB classifier on d1).
    HostT(Value),
}

struct Lowering<'a> {
    src: &'a Func,
    target: &'a Target,
    out: Func,
    vals: Vec<Option<Val>>,
    /// Layout of every mesh value of `out`.
    layouts: HashMap<Value, Layout>,
    /// Reshards already made: (value, layout, region) -> value.
    reshards: HashMap<(Value, Layout, Option<Region>), Value>,
    /// Arguments already loaded onto the mesh.
    /// (argument, area): each area loads its own copy from the host (a chip fetching another
    /// chip's copy would queue behind that chip's compute).
    loaded: HashMap<(Value, usize), Value>,
    /// Source values that only go to the host: returned, used by no op (`only_stored`).
    host_only: std::collections::HashSet<Value>,
    /// Transposes lowered as [`Val::HostT`] when their operand is still on the host.
    streamed_t: HashMap<Value, usize>,
    /// The largest block the default placement uses (at the current area's origin).
    max_block: (u32, u32),
    /// The current area's size (the target's usable grid, `Target::usable_grid`, or one
    /// chip's part of it) as (rows, cols).
    usable: (u32, u32),
    /// Bytes of every shard placed so far on each core of the largest block (row-major): a
    /// block narrower than it goes where this is least (see `block_origin`).
    load: Vec<u64>,
    plan: Plan,
    /// Values whose windows a concat spreading over the chips joins (a convolution's taps of
    /// its transposed input): the concat's size over theirs, their cut dims (`window_roots`).
    window_roots: HashMap<Value, (usize, Vec<bool>)>,
    /// Where the current op is placed: the usable grid's origin, or a chip's (`areas`).
    offset: (u32, u32),
    /// Whether the current area spans several chips (the whole grid of a multi-chip target).
    multi_chip: bool,
    /// The area of every source op (index into `areas`; 0: the whole usable grid).
    op_area: Vec<usize>,
    /// The area of every source value computed in a chip's area (see `areas`).
    value_area: HashMap<Value, usize>,
    /// The area being lowered into, and the others' state (`enter`).
    area: usize,
    areas: Vec<Option<Area>>,
}

/// A part of the usable grid ops are placed in: the whole of it, or a part's chip (or block of
/// chips, `dojo.part_chips`, or rectangle of the grid, `part_rects`) of a multi-chip target
/// (`dojo.on_chip`, see split-batch). Within one chip, placement is that of a lone D1: the
/// same blocks, no spreading across chips; within a block of chips or a rectangle, that of a
/// multi-chip target whose grid is the block or rectangle.
struct Area {
    offset: (u32, u32),
    usable: (u32, u32),
    max_block: (u32, u32),
    load: Vec<u64>,
    multi_chip: bool,
}

type LResult<T> = Result<T, PassError>;

fn tensor_type(f: &Func, v: Value) -> LResult<TensorType> {
    f.tensor(v).cloned().ok_or_else(|| PassError::Invalid(format!("value %{} is not a tensor", v.0)))
}

impl<'a> Lowering<'a> {
    fn new(src: &'a Func, target: &'a Target, plan: Plan) -> LResult<Lowering<'a>> {
        let mut out = Func::new(src.name.clone(), src.arg_types().to_vec());
        out.attrs = src.attrs.clone();
        let mut vals = vec![None; src.value_types.len()];
        for a in src.args() {
            vals[a.index()] = Some(Val::Host(a));
        }
        // Layouts are in the coordinates of the target's usable grid (no disabled sites in
        // any of its rectangles); emission maps them to sites.
        let usable = target.usable_grid().dims();
        if usable.0 == 0 || usable.1 == 0 {
            return Err(PassError::Capacity(format!("target '{}' has no usable core", target.name)));
        }
        let max_block = (MAX_BLOCK_EDGE.min(usable.0), MAX_BLOCK_EDGE.min(usable.1));
        let used: std::collections::HashSet<Value> = src.ops.iter().flat_map(|o| o.operands.iter().copied()).collect();
        let host_only = src.returns.iter().copied().filter(|v| !used.contains(v)).collect();
        let streamed_t = if plan == Plan::Default { streamed_transposes(src) } else { Default::default() };
        let (op_area, areas) = Self::areas(src, target, plan, &host_only)?;
        let mut lowering = Lowering {
            src,
            target,
            out,
            vals,
            layouts: HashMap::new(),
            reshards: HashMap::new(),
            loaded: HashMap::new(),
            host_only,
            streamed_t,
            max_block,
            usable,
            load: vec![0; (max_block.0 * max_block.1) as usize],
            plan,
            window_roots: HashMap::new(),
            offset: (0, 0),
            multi_chip: target.chip_grid != (1, 1),
            value_area: src.ops.iter().zip(&op_area).filter(|(_, &a)| a != 0).flat_map(|(o, &a)| o.results().map(move |r| (r, a))).collect(),
            op_area,
            area: 0,
            areas,
        };
        lowering.window_roots = lowering.window_roots();
        Ok(lowering)
    }

    /// The area of every op (default plan; the naive plan places everything on the whole
    /// grid): `dojo.on_chip {chip}` opens chip `chip`'s (with the function's attribute
    /// `dojo.part_chips = [h, w]`, the `chip`-th block of `h x w` chips in row-major order,
    /// as split-batch's `part_chips` lays them out, or the `chip`-th of equal rectangles of
    /// the usable grid when the parts' spreading matmuls compute sooner so: see below); an op
    /// takes the area its operands share (the whole grid when they come from different
    /// chips: the join of the parts);
    /// an op whose operands are all on the whole grid (arguments, constants, sums over the
    /// parts), all of whose first result's users (not counting a join of the parts that only
    /// goes to the host) are in one chip's area, is in that area too
    /// (a part's slice of the input loads straight onto its chip, its copy of a weight's
    /// transpose is made there, a whole value is sliced there).
    /// Returns the op areas and the areas (entry 0, the whole grid, is the lowering's own).
    fn areas(src: &Func, target: &Target, plan: Plan, host_only: &std::collections::HashSet<Value>) -> LResult<(Vec<usize>, Vec<Option<Area>>)> {
        let mut op_area = vec![0; src.ops.len()];
        let mut areas: Vec<Option<Area>> = vec![None];
        if plan != Plan::Default || !src.ops.iter().any(|o| o.name == "dojo.on_chip") {
            return Ok((op_area, areas));
        }
        let grid = target.usable_grid();
        let (cr, cc) = target.chip_grid;
        // The usable rows (columns) of chip row (column) `i`: a contiguous run of indices.
        let run = |lines: &[u32], per: u32, i: u32| {
            let idx: Vec<u32> = (0..lines.len() as u32).filter(|&k| lines[k as usize] / per == i).collect();
            (idx.first().copied().unwrap_or(0), idx.len() as u32)
        };
        // Chips per part (split-batch's `dojo.part_chips`, else one): part `chip`'s area is
        // the `chip`-th block of `h x w` chips, row-major.
        let (h, w) = match src.attrs.iter().find(|(k, _)| k == "dojo.part_chips").map(|(_, a)| a) {
            None => (1, 1),
            Some(Attr::Ints(v)) if v.len() == 2 && (1..=i64::from(cr)).contains(&v[0]) && (1..=i64::from(cc)).contains(&v[1]) => (v[0] as u32, v[1] as u32),
            Some(_) => {
                return Err(PassError::Invalid(format!(
                    "@{}: attribute 'dojo.part_chips' must be [rows, cols] of chips within target '{}''s {cr} x {cc}",
                    src.name, target.name
                )))
            }
        };
        let per_row = cc / w;
        let blocks = (cr / h) * per_row;
        // Areas are numbered as their chips first appear; their places come after the loop.
        let mut chip_area: HashMap<i64, usize> = HashMap::new();
        let mut val_area = vec![0usize; src.value_types.len()];
        for (i, op) in src.ops.iter().enumerate() {
            let a = if op.name == "dojo.on_chip" {
                let chip = op.attr("chip").and_then(Attr::as_int).unwrap_or(-1);
                if chip < 0 || chip >= i64::from(blocks) {
                    return Err(PassError::Invalid(format!(
                        "op #{i} 'dojo.on_chip': chip {chip} is not one of target '{}''s {blocks} block(s) of {h} x {w} chip(s)",
                        target.name
                    )));
                }
                *chip_area.entry(chip).or_insert_with(|| {
                    areas.push(None);
                    areas.len() - 1
                })
            } else {
                let mut from = op.operands.iter().map(|v| val_area[v.index()]).filter(|&a| a != 0);
                match from.next() {
                    Some(a) if from.all(|b| b == a) => a,
                    _ => 0,
                }
            };
            op_area[i] = a;
            for r in op.results() {
                val_area[r.index()] = a;
            }
        }
        let mut users: Vec<Vec<usize>> = vec![Vec::new(); src.value_types.len()];
        for (i, op) in src.ops.iter().enumerate() {
            for v in &op.operands {
                users[v.index()].push(i);
            }
        }
        let returned: std::collections::HashSet<Value> = src.returns.iter().copied().collect();
        // A join of the parts that only goes to the host is stored part by part from where
        // they are: it does not pull its operands off their chips (a dropout mask kept for
        // the backward).
        let stored_join = |u: usize| src.ops[u].name == "dojo.concat" && host_only.contains(&src.ops[u].result(0));
        for (i, op) in src.ops.iter().enumerate().rev() {
            if op_area[i] != 0 || op.operands.iter().any(|v| val_area[v.index()] != 0) || returned.contains(&op.result(0)) {
                continue;
            }
            let mut to = users[op.result(0).index()].iter().filter(|&&u| !stored_join(u)).map(|&u| op_area[u]);
            if let Some(a) = to.next().filter(|&a| a != 0) {
                if to.all(|b| b == a) {
                    op_area[i] = a;
                }
            }
        }
        // Where each part's area is: its block of chips, or an equal rectangle of the whole
        // usable grid (`part_rects`), chip edges or not, so that no chip idles. Rectangles
        // when the part's matmuls that spread over its area (those computing for at least
        // `PART_MIN_MATMUL_S` on the largest block) would compute sooner on the cores the
        // rectangle gives them (`place_within`'s grid: result rows and columns over mesh rows
        // and columns, `MIN_SHARD_EDGE` a side at least). In a block of chips, blocks of at
        // most `MAX_BLOCK_EDGE` cores a side do not straddle a chip edge. Measured on a tile at
        // batch 8 (8 parts of 1 x 2 chips: 16 of the 25 chips; rectangles: 2 x 4 of 42 x 23
        // cores), `PART_MIN_MATMUL_S` 30 us: GPT-2 124M inference 4.173 -> 3.378 ms, training
        // forward 4.201 -> 3.922, backward 8.908 -> 7.630; but GPT-2 (1000 words, seq 128),
        // whose 128-row matmuls get fewer cores in a 42 x 23 rectangle than in a 17 x 38
        // block, inference 1.037 -> 1.327 ms (it keeps its blocks).
        let parts = chip_area.keys().max().map_or(0, |&c| c as usize + 1);
        let chip_block = |chip: u32| {
            let (ci, cj) = (chip / per_row * h, chip % per_row * w);
            let (r0, c0) = (run(&grid.rows, target.core_grid.0, ci).0, run(&grid.cols, target.core_grid.1, cj).0);
            let rows = (ci..ci + h).map(|i| run(&grid.rows, target.core_grid.0, i).1).sum();
            let cols = (cj..cj + w).map(|j| run(&grid.cols, target.core_grid.1, j).1).sum();
            ((r0, c0), (rows, cols))
        };
        let rects = part_rects((grid.rows.len() as u32, grid.cols.len() as u32), parts).filter(|&(_, rect)| {
            // The parts' spreading matmuls: each with its result's rows and columns.
            let block_cores = f64::from(MAX_BLOCK_EDGE * MAX_BLOCK_EDGE);
            let spreading: Vec<(&Op, usize, usize)> = src
                .ops
                .iter()
                .zip(&op_area)
                .filter(|&(o, &a)| a != 0 && o.name == "dojo.matmul" && matmul_seconds(target, src, o, block_cores) >= PART_MIN_MATMUL_S)
                .filter_map(|(o, _)| match src.tensor(o.result(0))?.shape[..] {
                    [.., m, n] => Some((o, m, n)),
                    _ => None,
                })
                .collect();
            // Seconds they compute in an area of `rows x cols` cores.
            let compute = |(rows, cols): (u32, u32)| -> f64 {
                spreading
                    .iter()
                    .map(|&(o, m, n)| matmul_seconds(target, src, o, f64::from(grid_for(m, MIN_SHARD_EDGE, rows) * grid_for(n, MIN_SHARD_EDGE, cols))))
                    .sum()
            };
            h * w > 1 && compute(rect) < compute(chip_block(0).1)
        });
        for (&chip, &a) in &chip_area {
            let chip = chip as u32;
            let (offset, usable) = match rects {
                Some((pc, (rh, cw))) => ((chip / pc * rh, chip % pc * cw), (rh, cw)),
                None => chip_block(chip),
            };
            let max_block = (MAX_BLOCK_EDGE.min(usable.0), MAX_BLOCK_EDGE.min(usable.1));
            areas[a] = Some(Area { offset, usable, max_block, load: vec![0; (max_block.0 * max_block.1) as usize], multi_chip: h * w > 1 });
        }
        Ok((op_area, areas))
    }

    /// Place the following ops in area `a` (see `areas`).
    fn enter(&mut self, a: usize) {
        if a == self.area {
            return;
        }
        let mine = Area {
            offset: self.offset,
            usable: self.usable,
            max_block: self.max_block,
            load: std::mem::take(&mut self.load),
            multi_chip: self.multi_chip,
        };
        self.areas[self.area] = Some(mine);
        let next = self.areas[a].take().expect("area state present");
        (self.offset, self.usable, self.max_block, self.load, self.multi_chip) =
            (next.offset, next.usable, next.max_block, next.load, next.multi_chip);
        self.area = a;
    }

    /// On a multi-chip target (default plan): the values whose windows a concat joins — each
    /// of its operands a chain of slices, pads and reshapes of the same value — when the
    /// concat spreads over the whole usable grid: the concat's size over the value's, and
    /// which of the value's dims some window cuts (`true`). Such a value spreads over its
    /// uncut dims as soon as it is computed (`spread_root`), so the windows and the concat
    /// are local: a convolution's input moves once, not as its T-times larger taps.
    fn window_roots(&self) -> HashMap<Value, (usize, Vec<bool>)> {
        let mut roots: HashMap<Value, (usize, Vec<bool>)> = HashMap::new();
        if !self.multi_chip || self.plan != Plan::Default {
            return roots;
        }
        let producer: HashMap<Value, &Op> = self.src.ops.iter().map(|o| (o.result(0), o)).collect();
        let movement = |v: &Value| producer.get(v).copied().filter(|o| matches!(o.name.as_str(), "dojo.slice" | "dojo.pad" | "dojo.reshape"));
        // The chain's root and, per root dim, whether a step changes it.
        let chain = |v: Value| -> Option<(Value, Vec<bool>)> {
            let mut steps = vec![];
            let mut r = v;
            while let Some(o) = movement(&r) {
                steps.push(o);
                r = o.operands[0];
            }
            let shape = &self.src.tensor(r)?.shape;
            let mut at: Vec<Option<usize>> = (0..shape.len()).map(Some).collect();
            let mut cur = shape.clone();
            for o in steps.iter().rev() {
                let next = &self.src.tensor(o.result(0))?.shape;
                if next.len() == cur.len() && o.name != "dojo.reshape" {
                    at = at.into_iter().map(|d| d.filter(|&d| next[d] == cur[d])).collect();
                } else {
                    let pairs = reshape_carriable_dims(&cur, next);
                    at = at.into_iter().map(|d| d.and_then(|d| pairs.iter().find(|p| p.0 == d && next[p.1] == cur[d]).map(|p| p.1))).collect();
                }
                cur = next.clone();
            }
            Some((r, at.iter().map(Option::is_none).collect()))
        };
        for op in self.src.ops.iter().filter(|o| o.name == "dojo.concat" && o.operands.len() > 1) {
            let Some(t) = self.src.tensor(op.result(0)) else { continue };
            let Some(chains) = op.operands.iter().map(|&v| chain(v)).collect::<Option<Vec<_>>>() else { continue };
            let root = chains[0].0;
            let Some(rt) = self.src.tensor(root).filter(|rt| rt.numel() > 0) else { continue };
            if chains.iter().all(|c| c.0 == root) && self.caps((t.numel() * t.elem.bytes()) as u64) == self.usable {
                let cut: Vec<bool> = (0..rt.rank()).map(|d| chains.iter().any(|c| c.1[d])).collect();
                let ratio = t.numel().div_ceil(rt.numel());
                let e = roots.entry(root).or_insert((ratio, cut.clone()));
                e.0 = e.0.max(ratio);
                e.1.iter_mut().zip(&cut).for_each(|(a, b)| *a |= b);
            }
        }
        roots
    }

    /// A window root (`window_roots`) split over its two largest uncut dims on the usable grid,
    /// if then `ratio` times its shards fit [`FOLLOW_MAX_BYTES`] and that takes more cores.
    fn spread_root(&mut self, m: Value, ratio: usize, cut: &[bool]) -> LResult<Value> {
        let l = self.layout(m);
        let t = tensor_type(&self.out, m)?;
        let mut dims: Vec<usize> = (0..t.rank()).filter(|&d| !cut[d] && t.shape[d] > 1).collect();
        dims.sort_by_key(|&d| std::cmp::Reverse(t.shape[d]));
        let Some(&r) = dims.first() else { return Ok(m) };
        let wide = self.place_within(&t.shape, Some(r), dims.get(1).copied(), self.usable, (1, 1))?;
        let bytes = (wide.max_shard_numel(&t.shape) * t.elem.bytes() * ratio) as u64;
        if bytes > FOLLOW_MAX_BYTES || wide.num_cores() <= l.num_cores() {
            return Ok(m);
        }
        self.reshard(m, &wide, None)
    }

    fn run(mut self) -> LResult<Func> {
        let src = self.src;
        for (i, op) in src.ops.iter().enumerate() {
            self.enter(self.op_area[i]);
            let v = self.lower_op(op).map_err(|e| match e {
                PassError::Invalid(m) => PassError::Invalid(format!("@{} op #{i} '{}': {m}", src.name, op.name)),
                PassError::Capacity(m) => PassError::Capacity(format!("@{} op #{i} '{}': {m}", src.name, op.name)),
                other => other,
            })?;
            let root = if self.area == 0 { self.window_roots.get(&op.result(0)).cloned() } else { None };
            let v = match (v, root) {
                (Val::Mesh(m), Some((ratio, cut))) => Val::Mesh(self.spread_root(m, ratio, &cut)?),
                (v, _) => v,
            };
            self.vals[op.result(0).index()] = Some(v);
        }
        self.enter(0);
        let mut rets = Vec::new();
        let mut stored: HashMap<Value, Value> = HashMap::new();
        for r in &src.returns {
            let v = match self.val(*r)? {
                Val::Host(a) | Val::Stored(a) => a,
                Val::HostT(_) => {
                    let m = self.on_mesh(*r)?;
                    self.store(m, &mut stored)
                }
                Val::Const(..) => {
                    let t = tensor_type(src, *r)?;
                    let l = Layout::single(self.origin(), t.rank());
                    let m = self.materialize(*r, &l, None)?;
                    self.store(m, &mut stored)
                }
                Val::Mesh(m) => self.store(m, &mut stored),
            };
            rets.push(v);
        }
        self.out.set_returns(rets);
        Ok(self.out)
    }

    /// Whether source value `v` only goes to the host: returned, used by no op.
    fn only_stored(&self, v: Value) -> bool {
        self.host_only.contains(&v)
    }

    /// Whether layout `l` lies in the current area (always, in the whole grid's). A value
    /// outside a chip's area does not set the layout of an op in it: the op would run where
    /// the value is, on another chip.
    fn in_area(&self, l: &Layout) -> bool {
        let (lo, hi) = (self.offset, (self.offset.0 + self.usable.0, self.offset.1 + self.usable.1));
        self.area == 0 || l.cores().all(|(r, c)| (lo.0..hi.0).contains(&r) && (lo.1..hi.1).contains(&c))
    }

    /// Whether host argument `a` is already loaded in the current area.
    fn is_loaded(&self, a: Value) -> bool {
        self.loaded.contains_key(&(a, self.area))
    }

    fn store(&mut self, m: Value, stored: &mut HashMap<Value, Value>) -> Value {
        if let Some(s) = stored.get(&m) {
            return *s;
        }
        let ty = self.out.ty(m).clone();
        let s = self.out.push("d1.store", vec![m], vec![], vec![ty]);
        stored.insert(m, s);
        s
    }

    fn val(&self, v: Value) -> LResult<Val> {
        self.vals
            .get(v.index())
            .cloned()
            .flatten()
            .ok_or_else(|| PassError::Invalid(format!("value %{} is used before it is lowered", v.0)))
    }

    /// The largest block a tensor of `bytes` may spread over: the default block, or on a
    /// multi-chip target the whole usable grid (across chips) for a tensor whose shards on
    /// the default block would hold at least [`MULTI_CHIP_MIN_SHARD_BYTES`]. (On one chip
    /// the 16 x 16 block stays: 17 x 19 splits powers of two unevenly.)
    fn caps(&self, bytes: u64) -> (u32, u32) {
        let (mr, mc) = self.max_block;
        if self.multi_chip && bytes / u64::from(mr * mc) >= MULTI_CHIP_MIN_SHARD_BYTES {
            self.usable
        } else {
            self.max_block
        }
    }

    fn origin(&self) -> (u32, u32) {
        self.block_origin(1, 1, 0).unwrap_or((0, 0))
    }

    /// The origin of a `gr x gc` block for shards of `shard_bytes`: inside the largest block,
    /// at multiples of its own size, where the most loaded of its cores holds the fewest bytes
    /// so far (the first such in row-major order). Blocks narrower than the largest would
    /// otherwise all start at its corner and pile their shards into the same few cores' SRAM.
    /// Small shards (below [`SPREAD_MIN_BYTES`]) stay at the corner, near everything else.
    /// None if the block does not fit. In global usable-grid coordinates (the current area's
    /// offset added).
    fn block_origin(&self, gr: u32, gc: u32, shard_bytes: u64) -> Option<(u32, u32)> {
        let (dr, dc) = self.offset;
        self.local_block_origin(gr, gc, shard_bytes).map(|(r, c)| (r + dr, c + dc))
    }

    fn local_block_origin(&self, gr: u32, gc: u32, shard_bytes: u64) -> Option<(u32, u32)> {
        let (mr, mc) = self.max_block;
        if gr > mr || gc > mc || gr == 0 || gc == 0 || shard_bytes < SPREAD_MIN_BYTES {
            return (gr <= self.usable.0 && gc <= self.usable.1).then_some((0, 0));
        }
        let mut best: Option<(u64, (u32, u32))> = None;
        for r in (0..=mr - gr).step_by(gr as usize) {
            for c in (0..=mc - gc).step_by(gc as usize) {
                let peak = (r..r + gr).flat_map(|i| (c..c + gc).map(move |j| (i * mc + j) as usize)).map(|k| self.load[k]).max().unwrap_or(0);
                if best.is_none_or(|(b, _)| peak < b) {
                    best = Some((peak, (r, c)));
                }
            }
        }
        best.map(|(_, o)| o)
    }

    /// Emit a mesh op with its layout; returns its result.
    fn emit(&mut self, name: &str, operands: Vec<Value>, mut attrs: Vec<(String, Attr)>, ty: TensorType, layout: Layout) -> Value {
        let bytes = (layout.max_shard_numel(&ty.shape) * ty.elem.bytes()) as u64;
        let (mr, mc) = self.max_block;
        let (dr, dc) = self.offset;
        for (r, c) in layout.cores() {
            if let (Some(r), Some(c)) = (r.checked_sub(dr), c.checked_sub(dc)) {
                if r < mr && c < mc {
                    self.load[(r * mc + c) as usize] += bytes;
                }
            }
        }
        attrs.push(attr("layout", layout.to_attr()));
        let v = self.out.push(format!("d1.{name}"), operands, attrs, vec![Type::Tensor(ty)]);
        self.layouts.insert(v, layout);
        v
    }

    /// The default layout for a tensor shape (see the module doc): the two dims whose splits
    /// give the most cores (shards of at least [`MIN_SHARD_EDGE`]), the later dims on ties, so
    /// a matrix splits its last two dims while a conv weight `[256, 128, 3, 3]` or an
    /// activation `[2, 128, 8, 8]` splits its channels.
    /// If shards of at least [`MIN_SHARD_EDGE`] would exceed [`FOLLOW_MAX_BYTES`] (at most one
    /// dim is long enough, e.g. the taps of a convolution's columns `[8, 256, 9, 14, 14]` went
    /// to 16 cores at 882 KiB each), any shard edge is allowed.
    fn place(&self, shape: &[usize]) -> LResult<Layout> {
        if self.plan == Plan::Naive {
            return Ok(self.naive(shape));
        }
        let rank = shape.len();
        let cap = self.caps(4 * shape.iter().product::<usize>() as u64);
        let dims = |edge: usize| {
            let chunks = |d: usize, max: u32| ((shape[d] / edge).max(1) as u32).min(max) as usize;
            let mut best = (rank.checked_sub(2), rank.checked_sub(1));
            let mut best_cores = best.0.map_or(1, |r| chunks(r, cap.0)) * best.1.map_or(1, |c| chunks(c, cap.1));
            for c in (0..rank).rev() {
                for r in (0..c).rev() {
                    let cores = chunks(r, cap.0) * chunks(c, cap.1);
                    if cores > best_cores {
                        (best, best_cores) = ((Some(r), Some(c)), cores);
                    }
                }
            }
            best
        };
        let (r, c) = dims(MIN_SHARD_EDGE);
        let l = self.place_within(shape, r, c, cap, (MIN_SHARD_EDGE, MIN_SHARD_EDGE))?;
        if 4 * l.max_shard_numel(shape) as u64 <= FOLLOW_MAX_BYTES {
            return Ok(l);
        }
        let (r, c) = dims(1);
        let thin = self.place_within(shape, r, c, cap, (1, 1))?;
        Ok(if thin.max_shard_numel(shape) < l.max_shard_numel(shape) { thin } else { l })
    }

    /// The layout splitting dim `rows` over mesh rows and `cols` over mesh columns (as many
    /// chunks as give shards of at least `edge` (rows, columns) elements, at most the largest
    /// block), at the first block free of disabled sites.
    fn place_on(&self, shape: &[usize], rows: Option<usize>, cols: Option<usize>, edge: (usize, usize)) -> LResult<Layout> {
        self.place_within(shape, rows, cols, self.caps(4 * shape.iter().product::<usize>() as u64), edge)
    }

    /// [`Self::place_on`] within a block of at most `cap` cores a side.
    fn place_within(&self, shape: &[usize], rows: Option<usize>, cols: Option<usize>, cap: (u32, u32), edge: (usize, usize)) -> LResult<Layout> {
        let mut split = vec![NONE; shape.len()];
        let mut gr = 1;
        let mut gc = 1;
        if let Some(c) = cols {
            split[c] = COLS;
            gc = grid_for(shape[c], edge.1, cap.1);
        }
        if let Some(r) = rows {
            split[r] = ROWS;
            gr = grid_for(shape[r], edge.0, cap.0);
        }
        let origin = loop {
            let shard = Layout { origin: (0, 0), grid: (gr, gc), split: split.clone() }.max_shard_numel(shape);
            match self.block_origin(gr, gc, 4 * shard as u64) {
                Some(c) => break c,
                None if gr > 1 || gc > 1 => {
                    if gr >= gc {
                        gr -= 1
                    } else {
                        gc -= 1
                    }
                }
                None => return Err(PassError::Capacity(format!("target '{}' has no usable core", self.target.name))),
            }
        };
        Ok(Layout { origin, grid: (gr, gc), split })
    }

    /// The value of `old` laid out as `want` (optionally only `region` of it).
    fn materialize(&mut self, old: Value, want: &Layout, region: Option<&Region>) -> LResult<Value> {
        let shape_of = |t: &TensorType| region.map(|r| r.sizes.clone()).unwrap_or(t.shape.clone());
        match self.val(old)? {
            Val::Const(value, t) => {
                let ty = TensorType::new(shape_of(&t), t.elem);
                Ok(self.emit("fill", vec![], vec![attr("value", Attr::Float(value))], ty, want.clone()))
            }
            Val::Host(_) | Val::HostT(_) | Val::Mesh(_) | Val::Stored(_) => {
                let m = self.on_mesh(old)?;
                self.reshard(m, want, region)
            }
        }
    }

    /// Box `region` of `old` in layout `want` (a matmul step's operand panel). A host tensor
    /// not on the mesh yet is loaded box by box straight into the panels (each step's load
    /// then overlaps the step before's compute), not whole and then resharded; a transposed
    /// one ([`Val::HostT`]) as the box of the argument, transposed on every core.
    fn panel(&mut self, old: Value, want: &Layout, region: &Region) -> LResult<Value> {
        match self.val(old)? {
            Val::Host(a) if !self.is_loaded(a) => {
                let t = tensor_type(&self.out, a)?;
                Ok(self.emit("load", vec![a], box_attrs(region), TensorType::new(region.sizes.clone(), t.elem), want.clone()))
            }
            Val::HostT(a) => {
                let t = tensor_type(&self.out, a)?;
                let boxed = Region { offsets: vec![region.offsets[1], region.offsets[0]], sizes: vec![region.sizes[1], region.sizes[0]] };
                let l = Layout { split: vec![want.split[1], want.split[0]], ..want.clone() };
                let m = self.emit("load", vec![a], box_attrs(&boxed), TensorType::new(boxed.sizes.clone(), t.elem), l);
                Ok(self.transpose_local(m, &[1, 0], TensorType::new(region.sizes.clone(), t.elem)))
            }
            _ => self.materialize(old, want, Some(region)),
        }
    }

    /// The mesh value of `old`, loading an argument in its default layout on first use.
    fn on_mesh(&mut self, old: Value) -> LResult<Value> {
        match self.val(old)? {
            Val::Mesh(m) => Ok(m),
            Val::Host(a) => {
                if let Some(m) = self.loaded.get(&(a, self.area)) {
                    return Ok(*m);
                }
                let t = tensor_type(&self.out, a)?;
                let l = self.place(&t.shape)?;
                let m = self.emit("load", vec![a], vec![], t, l);
                self.loaded.insert((a, self.area), m);
                Ok(m)
            }
            Val::Const(..) => {
                let t = tensor_type(self.src, old)?;
                let l = self.place(&t.shape)?;
                self.materialize(old, &l, None)
            }
            // Loaded whole and transposed on the mesh (once: the value is on the mesh after).
            Val::HostT(a) => {
                let m = self.on_mesh(a)?;
                let m = self.transpose_local(m, &[1, 0], tensor_type(self.src, old)?);
                self.vals[old.index()] = Some(Val::Mesh(m));
                Ok(m)
            }
            Val::Stored(_) => Err(PassError::Invalid(format!("internal: %{} was stored to the host but has a use", old.0))),
        }
    }

    /// Mesh value `m` transposed by `perm` where it lies: each core its own shard, the result's
    /// layout the operand's with its split dims permuted alike.
    fn transpose_local(&mut self, m: Value, perm: &[usize], rt: TensorType) -> Value {
        let l = self.layout(m);
        let out = Layout { split: perm.iter().map(|&p| l.split[p]).collect(), ..l };
        let ints = perm.iter().map(|&p| p as i64).collect();
        self.emit("transpose", vec![m], vec![attr("perm", Attr::Ints(ints))], rt, out)
    }

    fn reshard(&mut self, m: Value, want: &Layout, region: Option<&Region>) -> LResult<Value> {
        let t = tensor_type(&self.out, m)?;
        let region = region.filter(|r| r.offsets.iter().any(|&o| o != 0) || r.sizes != t.shape);
        if region.is_none() && self.layouts.get(&m) == Some(want) {
            return Ok(m);
        }
        let key = (m, want.clone(), region.cloned());
        if let Some(v) = self.reshards.get(&key) {
            return Ok(*v);
        }
        let mut attrs = Vec::new();
        let mut ty = t.clone();
        if let Some(r) = region {
            attrs = box_attrs(r);
            ty.shape = r.sizes.clone();
        }
        want.check(&ty.shape).map_err(|e| PassError::Invalid(format!("internal: bad reshard layout: {e}")))?;
        let v = self.emit("reshard", vec![m], attrs, ty, want.clone());
        self.reshards.insert(key, v);
        Ok(v)
    }

    fn layout(&self, m: Value) -> Layout {
        self.layouts.get(&m).cloned().unwrap_or(Layout::single((0, 0), 0))
    }

    fn lower_op(&mut self, op: &Op) -> LResult<Val> {
        if op.num_results != 1 {
            return Err(PassError::Invalid("ops with several results cannot be lowered yet".into()));
        }
        let rt = tensor_type(self.src, op.result(0))?;
        let kind = match op.name.strip_prefix("dojo.") {
            Some(k) => k,
            None => {
                return Err(PassError::Invalid(format!(
                    "lower-to-d1 takes graph-level IR: run legalize-aten first (found '{}')",
                    op.name
                )))
            }
        };
        match kind {
            "constant" => {
                let v = op.attr("value").and_then(Attr::as_float).unwrap_or(0.0);
                Ok(Val::Const(v, rt))
            }
            "matmul" => self.matmul(op, rt),
            "transpose" => {
                let perm: Vec<usize> =
                    op.attr("perm").and_then(Attr::as_ints).unwrap_or(&[]).iter().map(|&p| p as usize).collect();
                match self.val(op.operands[0])? {
                    Val::Const(v, _) => return Ok(Val::Const(v, rt)),
                    Val::Host(a) if self.streamed_t.contains_key(&op.result(0)) && !self.is_loaded(a) => {
                        let t = tensor_type(&self.out, a)?;
                        let large = (self.place(&t.shape)?.max_shard_numel(&t.shape) * t.elem.bytes()) as u64 > STREAM_T_MIN_SHARD_BYTES;
                        if large || self.streamed_t[&op.result(0)] >= STREAM_T_MIN_ROWS {
                            return Ok(Val::HostT(a));
                        }
                    }
                    _ => {}
                }
                let m = self.on_mesh(op.operands[0])?;
                if self.plan == Plan::Naive {
                    return Ok(Val::Mesh(self.transpose_naive(m, &perm, rt)?));
                }
                Ok(Val::Mesh(self.transpose_local(m, &perm, rt)))
            }
            "reduce_sum" | "reduce_max" => self.reduce(op, rt, kind),
            "reshape" => {
                if let Val::Const(v, _) = self.val(op.operands[0])? {
                    return Ok(Val::Const(v, rt));
                }
                let m = self.on_mesh(op.operands[0])?;
                // Only going to the host, splitting the first dim (GPT-2's logits `[4096, n]`
                // to `[8, 512, n]`): the operand stored as it is, the same row-major elements,
                // with no reshard to a layout the new shape carries.
                let shape = tensor_type(&self.out, m)?.shape;
                if self.plan == Plan::Default && shape != rt.shape && self.only_stored(op.result(0)) && dojo_runtime::merged_lead(&shape, &rt.shape).is_some() {
                    return Ok(Val::Stored(self.out.push("d1.store", vec![m], vec![], vec![Type::Tensor(rt)])));
                }
                Ok(Val::Mesh(self.reshape(m, rt)?))
            }
            "broadcast" => {
                if let Val::Const(v, _) = self.val(op.operands[0])? {
                    return Ok(Val::Const(v, rt));
                }
                // select(true, x, x) broadcasts x exactly, with no arithmetic on its values.
                let out = self.place(&rt.shape)?;
                let x = self.aligned(op.operands[0], &out, &rt.shape)?;
                let truth = TensorType::new(rt.shape.clone(), ElemType::I1);
                let c = self.emit("fill", vec![], vec![attr("value", Attr::Float(1.0))], truth, out.clone());
                Ok(Val::Mesh(self.emit("map", vec![c, x, x], vec![attr("fn", Attr::Str("select".into()))], rt, out)))
            }
            "convert" => {
                let from = tensor_type(self.src, op.operands[0])?.elem;
                match (from, rt.elem) {
                    (a, b) if a == b => self.val(op.operands[0]),
                    (ElemType::F32, ElemType::I1) => self.elementwise("ne", &op.operands, Some(0.0), rt),
                    // Integers and bools are carried as exact f32 values: a copy converts them.
                    (ElemType::I1 | ElemType::I64 | ElemType::I32, ElemType::F32)
                    | (ElemType::I1 | ElemType::I64 | ElemType::I32, ElemType::I64 | ElemType::I32) => {
                        self.elementwise("convert", &op.operands, None, rt)
                    }
                    (ElemType::I64 | ElemType::I32, ElemType::I1) => self.elementwise("ne", &op.operands, Some(0.0), rt),
                    // Rounding to a storage format (the precision pass): a Convert kernel per
                    // shard; the scale's name and host input ride along to emission.
                    (ElemType::F32, ElemType::BF16 | ElemType::CFloat(..)) => {
                        let v = self.elementwise("convert", &op.operands, None, rt)?;
                        if let Some(last) = self.out.ops.last_mut() {
                            for key in ["tensor", "scale_input"] {
                                if let Some(a) = op.attr(key) {
                                    last.attrs.push((key.to_string(), a.clone()));
                                }
                            }
                            last.attrs.sort_by(|a, b| a.0.cmp(&b.0));
                        }
                        Ok(v)
                    }
                    (a, b) => Err(PassError::Invalid(format!("conversion from {a} to {b} is not supported yet"))),
                }
            }
            "cmp" => {
                let pred = op.attr("predicate").and_then(Attr::as_str).unwrap_or("").to_string();
                if !COMPARE.contains(&pred.as_str()) {
                    return Err(PassError::Invalid(format!("unknown predicate '{pred}'")));
                }
                self.elementwise(&pred, &op.operands, None, rt)
            }
            "slice" | "pad" => {
                if let Val::Const(v, _) = self.val(op.operands[0])? {
                    let fill = op.attr("value").and_then(Attr::as_float).unwrap_or(v);
                    if kind == "slice" || fill.to_bits() == v.to_bits() {
                        return Ok(Val::Const(v, rt));
                    }
                }
                // A part's slice of a host input (split-batch) loads only its box onto its chip.
                if let (Val::Host(a), true) = (self.val(op.operands[0])?, self.area != 0 && kind == "slice") {
                    let ints = |k: &str| op.attr(k).and_then(Attr::as_ints).unwrap_or(&[]).to_vec();
                    if !self.is_loaded(a) && ints("strides").iter().all(|&x| x == 1) {
                        let region = Region { offsets: ints("offsets").iter().map(|&x| x as usize).collect(), sizes: rt.shape.clone() };
                        let l = self.place(&rt.shape)?;
                        return Ok(Val::Mesh(self.emit("load", vec![a], box_attrs(&region), rt, l)));
                    }
                }
                let m = self.on_mesh(op.operands[0])?;
                let out = self.follow(m, &rt)?;
                Ok(Val::Mesh(self.emit(kind, vec![m], op.attrs.clone(), rt, out)))
            }
            "on_chip" => {
                // The value, on its chip (`areas`): moved there if it is not.
                if let Val::Const(..) = self.val(op.operands[0])? {
                    return self.val(op.operands[0]);
                }
                let m = self.on_mesh(op.operands[0])?;
                if self.in_area(&self.layout(m)) {
                    return Ok(Val::Mesh(m));
                }
                let want = self.place(&rt.shape)?;
                Ok(Val::Mesh(self.reshard(m, &want, None)?))
            }
            "embedding" => {
                // Each core holds its ids and the table's columns for its part of D.
                let r = rt.rank();
                let out = if self.plan == Plan::Naive { self.naive_on(&rt.shape, r - 1) } else { self.place(&rt.shape)? };
                let ids_l = Layout { split: out.split[..r - 1].to_vec(), ..out.clone() };
                let table_l = Layout { split: vec![NONE, out.split[r - 1]], ..out.clone() };
                let tt = tensor_type(self.src, op.operands[0])?;
                if (table_l.max_shard_numel(&tt.shape) * tt.elem.bytes()) as u64 > self.target.usable_sram_bytes() / 4 {
                    return self.embedding_parts(op, &tt, rt);
                }
                let table = self.materialize(op.operands[0], &table_l, None)?;
                let ids = self.materialize(op.operands[1], &ids_l, None)?;
                Ok(Val::Mesh(self.emit(kind, vec![table, ids], op.attrs.clone(), rt, out)))
            }
            "embedding_grad" => {
                // Each core sums the gradient rows of the ids in its block of table rows: every
                // core sees all ids and the gradient's columns for its part of D.
                let out = if self.plan == Plan::Naive { self.naive_on(&rt.shape, 1) } else { self.place(&rt.shape)? };
                let g = tensor_type(self.src, op.operands[0])?;
                let mut gsplit = vec![NONE; g.rank()];
                gsplit[g.rank() - 1] = out.split[1];
                let grad_l = Layout { split: gsplit, ..out.clone() };
                let ids_l = Layout { split: vec![NONE; g.rank() - 1], ..out.clone() };
                let grad = self.materialize(op.operands[0], &grad_l, None)?;
                let ids = self.materialize(op.operands[1], &ids_l, None)?;
                Ok(Val::Mesh(self.emit(kind, vec![grad, ids], op.attrs.clone(), rt, out)))
            }
            "iota" | "random" => {
                let out = self.place(&rt.shape)?;
                Ok(Val::Mesh(self.emit(kind, vec![], op.attrs.clone(), rt, out)))
            }
            "concat" => {
                let ins = op.operands.iter().map(|&o| self.on_mesh(o)).collect::<LResult<Vec<_>>>()?;
                // A join of values on different chips (split-batch's parts) that only goes to
                // the host: each part stored from where it is, into its region of the result.
                let only_stored = self.only_stored(op.result(0));
                let chips: std::collections::HashSet<usize> = op.operands.iter().filter_map(|v| self.value_area.get(v).copied()).collect();
                if only_stored && chips.len() > 1 && op.operands.iter().all(|v| self.value_area.contains_key(v)) {
                    let dim = op.attr("dim").cloned().unwrap_or(Attr::Int(0));
                    return Ok(Val::Stored(self.out.push("d1.store", ins, vec![("dim".to_string(), dim)], vec![Type::Tensor(rt)])));
                }
                let out = self.follow(ins[0], &rt)?;
                Ok(Val::Mesh(self.emit(kind, ins, op.attrs.clone(), rt, out)))
            }
            k if map_arity(k).is_some() => self.elementwise(k, &op.operands, None, rt),
            "fused" => {
                let v = self.elementwise("fused", &op.operands, None, rt)?;
                if let (Some(e), Some(last)) = (op.attr("expr"), self.out.ops.last_mut()) {
                    last.attrs.push(("expr".to_string(), e.clone()));
                    last.attrs.sort_by(|a, b| a.0.cmp(&b.0));
                }
                Ok(v)
            }
            other => Err(PassError::Invalid(format!("no lowering for 'dojo.{other}' yet"))),
        }
    }

    /// The layout of a data-movement result of type `rt` made from mesh value `m`: `m`'s own
    /// block and splits when they fit the new shape (each core then mostly reads from itself
    /// and its neighbours), else the default placement. Also the default placement when `m`'s
    /// layout would give shards of more than [`FOLLOW_MAX_BYTES`] that the default spreads
    /// thinner (a concat of many slices, e.g. the 49 taps of a 7x7 convolution, is many times
    /// its operands' size).
    fn follow(&self, m: Value, rt: &TensorType) -> LResult<Layout> {
        if self.plan == Plan::Naive {
            return self.place(&rt.shape);
        }
        let l = self.layout(m);
        let shape = &rt.shape;
        if l.split.len() == shape.len() && l.check(shape).is_ok() && self.in_area(&l) {
            let bytes = |l: &Layout| (l.max_shard_numel(shape) * rt.elem.bytes()) as u64;
            if bytes(&l) <= FOLLOW_MAX_BYTES {
                return Ok(l);
            }
            let placed = self.place(shape)?;
            // A result spreading over the chips of a multi-chip target: the operand's split
            // dims over the larger block, if that spreads as thin as the default (or within
            // FOLLOW_MAX_BYTES), so the dims a later reshape can carry stay split (a
            // convolution's taps split by rows of the image keep that split into the columns'
            // M; the default would split the width).
            let (r, c) = (l.split.iter().position(|&s| s == ROWS), l.split.iter().position(|&s| s == COLS));
            let cap = self.caps((rt.numel() * rt.elem.bytes()) as u64);
            if cap != self.max_block && !l.split.contains(&ALL) && (r.is_some() || c.is_some()) {
                let mut wide = self.place_within(shape, r, c, cap, (MIN_SHARD_EDGE, MIN_SHARD_EDGE))?;
                if bytes(&wide) > FOLLOW_MAX_BYTES {
                    wide = self.place_within(shape, r, c, cap, (1, 1))?;
                }
                if bytes(&wide) <= bytes(&placed).max(FOLLOW_MAX_BYTES) && bytes(&wide) < bytes(&l) {
                    return Ok(wide);
                }
            }
            return Ok(if bytes(&placed) < bytes(&l) { placed } else { l });
        }
        self.place(shape)
    }

    /// The layout an elementwise operand of shape `shape` needs for a result laid out `out`.
    fn aligned_layout(out: &Layout, out_shape: &[usize], shape: &[usize]) -> Layout {
        let off = out_shape.len() - shape.len().min(out_shape.len());
        let split = shape
            .iter()
            .enumerate()
            .map(|(d, &n)| if n == 1 && out_shape[off + d] != 1 { NONE } else { out.split[off + d] })
            .collect();
        Layout { origin: out.origin, grid: out.grid, split }
    }

    fn aligned(&mut self, old: Value, out: &Layout, out_shape: &[usize]) -> LResult<Value> {
        let t = tensor_type(self.src, old)?;
        let l = Self::aligned_layout(out, out_shape, &t.shape);
        self.materialize(old, &l, None)
    }

    /// `d1.map {fn}` over operands (plus a trailing constant operand `extra` if given).
    fn elementwise(&mut self, f: &str, operands: &[Value], extra: Option<f64>, rt: TensorType) -> LResult<Val> {
        // Where to compute: on the first mesh operand in this area that already has the
        // result's shape (the naive plan: always the result's row split).
        let mut out = None;
        let plan = self.plan;
        for &o in operands.iter().filter(|_| plan == Plan::Default) {
            if let Val::Mesh(m) = self.val(o)? {
                if tensor_type(&self.out, m)?.shape == rt.shape && self.in_area(&self.layout(m)) {
                    out = Some(self.layout(m));
                    break;
                }
            }
        }
        let out = match out {
            Some(l) => l,
            None => self.place(&rt.shape)?,
        };
        let mut ins = Vec::new();
        for &o in operands {
            ins.push(self.aligned(o, &out, &rt.shape)?);
        }
        if let Some(c) = extra {
            let t0 = tensor_type(&self.out, ins[0])?;
            let l = Layout { origin: out.origin, grid: out.grid, split: vec![] };
            ins.push(self.emit("fill", vec![], vec![attr("value", Attr::Float(c))], TensorType::new(vec![], t0.elem), l));
        }
        let shapes: Vec<Vec<usize>> = ins.iter().map(|v| tensor_type(&self.out, *v).map(|t| t.shape)).collect::<Result<_, _>>()?;
        let refs: Vec<&[usize]> = shapes.iter().map(Vec::as_slice).collect();
        broadcast_shapes(&refs).map_err(PassError::Invalid)?;
        Ok(Val::Mesh(self.emit("map", ins, vec![attr("fn", Attr::Str(f.into()))], rt, out)))
    }

    fn matmul(&mut self, op: &Op, rt: TensorType) -> LResult<Val> {
        let (ta, tb) = (tensor_type(self.src, op.operands[0])?, tensor_type(self.src, op.operands[1])?);
        if ta.rank() > 3 && tb.rank() == 2 {
            return self.matmul_flat(op, rt);
        }
        self.matmul_2d(op, rt, None, None)
    }

    /// The value of matmul operand `a` (`over`: a mesh value standing in for it, a flat
    /// matmul's rows as one dim).
    fn a_val(&self, a: Value, over: Option<&(Value, TensorType)>) -> LResult<Val> {
        match over {
            Some(&(m, _)) => Ok(Val::Mesh(m)),
            None => self.val(a),
        }
    }

    /// Box `region` of matmul operand `a` (or of `over`, see [`Self::a_val`]) in layout `want`.
    fn a_panel(&mut self, a: Value, over: Option<&(Value, TensorType)>, want: &Layout, region: &Region) -> LResult<Value> {
        match over {
            Some(&(m, _)) => self.reshard(m, want, Some(region)),
            None => self.panel(a, want, region),
        }
    }

    /// The matmul `op` with result type `rt`; `over`: mesh values standing in for `a` and
    /// the epilogue's operands (a flat matmul's, reshaped to `[1, rows, k]` and to the
    /// result's rows).
    fn matmul_2d(&mut self, op: &Op, rt: TensorType, over: Option<(Value, TensorType)>, over_extras: Option<Vec<(Value, TensorType)>>) -> LResult<Val> {
        let over = over.as_ref();
        let (a, b) = (op.operands[0], op.operands[1]);
        let ta = match over {
            Some((_, t)) => t.clone(),
            None => tensor_type(self.src, a)?,
        };
        let tb = tensor_type(self.src, b)?;
        let tb = if over.is_some() && tb.rank() == 2 { TensorType::new(vec![1, tb.shape[0], tb.shape[1]], tb.elem) } else { tb };
        let r = ta.rank();
        if !(r == 2 || r == 3) || tb.rank() != r {
            return Err(PassError::Invalid(format!("matmul of rank {r} is not lowered yet")));
        }
        // A batch dim (rank 3) is split over mesh rows (`batch_split`) or whole on every core.
        let batch = if r == 3 { ta.shape[0] } else { 1 };
        let (m, k, n) = (ta.shape[r - 2], ta.shape[r - 1], tb.shape[r - 1]);
        // A core's multiply-add rate for these operands (matrix unit or FP32).
        let rate = matmul_rate(self.target, ta.elem, tb.elem);
        let out = match self.plan {
            // A matmul that would compute for long on the default block spreads over the
            // whole usable grid of a multi-chip target, whatever its result's size.
            Plan::Default => {
                let (mr, mc) = self.max_block;
                let seconds = matmul_seconds(self.target, self.src, op, f64::from(mr * mc));
                let threshold = if self.area == 0 { MULTI_CHIP_MIN_MATMUL_S } else { PART_MIN_MATMUL_S };
                let spread = self.multi_chip && seconds >= threshold;
                let rows_cols = if spread {
                    self.place_within(&rt.shape, Some(r - 2), Some(r - 1), self.usable, (MIN_SHARD_EDGE, MIN_SHARD_EDGE))?
                } else {
                    self.place_on(&rt.shape, Some(r - 2), Some(r - 1), (matmul_row_edge(self.target, &ta, rate, seconds), MIN_SHARD_EDGE))?
                };
                let cap = if spread { self.usable } else { self.caps((rt.numel() * rt.elem.bytes()) as u64) };
                match self.batch_split(&rt, cap) {
                    Some(l) if l.num_cores() > rows_cols.num_cores() => l,
                    _ => rows_cols,
                }
            }
            // Rows over all cores, `b` replicated; a batched matmul's batch instead when it
            // spreads over more cores (then `b` is split by batch as well).
            Plan::Naive => {
                let block = self.naive_block(&rt.shape);
                let by_batch = r == 3 && naive_cores(batch, block) > naive_cores(m, block);
                self.naive_on(&rt.shape, if by_batch { 0 } else { r - 2 })
            }
        };
        let (ea, eb, er) = (ta.elem.bytes() as u64, tb.elem.bytes() as u64, rt.elem.bytes() as u64);
        // An epilogue (`x0` the product, `x<i>` operand `i + 1`) runs in the last K step's
        // kernel of each row block, its operands there in the result's layout (a broadcast
        // one: the shard's slice); they count as working set.
        let epilogue = matmul_epilogue(op).map_err(PassError::Invalid)?;
        let mesh_extras = over_extras.is_some();
        let extras: Vec<(Value, TensorType)> = match over_extras {
            Some(x) => x,
            None => op.operands[2..].iter().map(|&v| tensor_type(self.src, v).map(|t| (v, t))).collect::<Result<_, _>>()?,
        };
        // What the operands already occupy per core (and of that, what is on the mesh already).
        let (mut resident, mut on_mesh) = (0u64, 0u64);
        // (`b` of a flat matmul is rank 2 where it is, `[1, k, n]` only as panels.)
        let tb_here = if over.is_some() { tensor_type(self.src, b)? } else { tb.clone() };
        for (i, (v, t)) in [(a, &ta), (b, &tb_here)].into_iter().enumerate() {
            let (l, mesh) = match if i == 0 { self.a_val(v, over)? } else { self.val(v)? } {
                Val::Mesh(m) => (self.layout(m), true),
                Val::Host(h) => (self.place(&t.shape)?, self.is_loaded(h)),
                // Streamed in panels, counted in the steps' working set.
                Val::Const(..) | Val::Stored(_) | Val::HostT(_) => continue,
            };
            let bytes = (l.max_shard_numel(&t.shape) * t.elem.bytes()) as u64;
            resident += bytes;
            on_mesh += if mesh { bytes } else { 0 };
        }
        // Half of a core's SRAM beside the resident operands for the steps (the other half is
        // headroom for other live values; the Program check is the final word).
        let budget = |resident: u64| self.target.usable_sram_bytes().saturating_sub(resident) / 2;
        let fewest_steps = |need: &dyn Fn(u64) -> u64, budget: u64| (1..=k).find(|&s| need(k.div_ceil(s) as u64) <= budget);
        // Double-buffered operand slices of `kb` columns plus the accumulator, for `mb` x `nb`
        // result shards over `core_batch` batches and epilogue operands of `extra_bytes`.
        let need_of = |mb: u64, nb: u64, core_batch: usize, extra_bytes: u64, kb: u64| {
            2 * (ea * mb * kb + eb * core_batch as u64 * kb * nb) + er * mb * nb + extra_bytes
        };
        // For a result layout: batches a core multiplies (all of them unless the batch is
        // split), result rows it holds of `rows` rows (over its batches), result columns, the
        // epilogue operands' bytes, and the K steps whose working set (`need_of`) fits the
        // budget (each step after the first accumulates into the accumulator in place:
        // emission reuses a dying accumulator's buffers).
        struct Fit {
            core_batch: usize,
            mb: u64,
            nb: u64,
            extra_bytes: u64,
            steps: Option<usize>,
        }
        let fit = |out: &Layout| -> Fit {
            let extra_bytes: u64 = extras
                .iter()
                .map(|(_, t)| (Self::aligned_layout(out, &rt.shape, &t.shape).max_shard_numel(&t.shape) * t.elem.bytes()) as u64)
                .sum();
            let core_batch = if r == 3 { batch.div_ceil(out.axis_len(out.split[0])) } else { 1 };
            let mb = (m.div_ceil(out.axis_len(out.split[r - 2])) * core_batch) as u64;
            let nb = n.div_ceil(out.axis_len(out.split[r - 1])) as u64;
            let need = |kb: u64| need_of(mb, nb, core_batch, extra_bytes, kb);
            Fit { core_batch, mb, nb, extra_bytes, steps: fewest_steps(&need, budget(resident)) }
        };
        // A result split rows x columns that needs several K steps per core may instead split
        // its rows over every core of the block (`b` whole on each): when that uses at least
        // as many cores in fewer steps. A long contraction against a narrow `b` (resnet's stem:
        // 100352 x 147 @ 147 x 64 on d1) otherwise runs as dozens of 2-column steps.
        let mut chosen = fit(&out);
        let mut out = out;
        if self.plan == Plan::Default && out.split[r - 2] == ROWS && out.split[..r - 2].iter().all(|&s| s == NONE) && chosen.steps.is_none_or(|s| s > 1) {
            let cap = (self.max_block.0 as usize, self.max_block.1 as usize);
            let cores = naive_cores(m, cap);
            if let Some(grid) = naive_grid(cores, cap).filter(|_| cores >= out.num_cores()) {
                let mut split = vec![NONE; r];
                split[r - 2] = ALL;
                let shard = Layout { origin: (0, 0), grid, split: split.clone() }.max_shard_numel(&rt.shape);
                if let Some(origin) = self.block_origin(grid.0, grid.1, (shard * rt.elem.bytes()) as u64) {
                    let rows = Layout { origin, grid, split };
                    let by_rows = fit(&rows);
                    let fewer = match (by_rows.steps, chosen.steps) {
                        (Some(a), Some(b)) => a < b,
                        (Some(_), None) => true,
                        _ => false,
                    };
                    if fewer {
                        (out, chosen) = (rows, by_rows);
                    }
                }
            }
        }
        let Fit { core_batch, mb, nb, extra_bytes, steps } = chosen;
        let core_rows = |rows: usize| (rows.div_ceil(out.axis_len(out.split[r - 2])) * core_batch) as u64;
        let need = |kb: u64| need_of(mb, nb, core_batch, extra_bytes, kb);
        let too_big = || {
            PassError::Capacity(format!(
                "matmul {m}x{k} @ {k}x{n} needs {} B per core even one column at a time on a {}x{} block, but its steps may use {} B per core (half of the {} B its operands, {} B resident, leave free); nor does it fit in row blocks streamed from the host (possible only for a result that only goes to the host, its `a` from the host): use a larger mesh",
                need(1),
                out.grid.0,
                out.grid.1,
                budget(resident),
                budget(resident) * 2,
                resident
            ))
        };
        // A result that only goes to the host may be computed in row blocks (`row_blocks`):
        // the schedule the estimate finds fastest, if faster than one block (or the only way
        // to fit). Only when `a` comes from the host, its panels loaded straight into each
        // block's layout (from the mesh, a block's rows would move from the few mesh rows its
        // default layout holds them on to all rows, for every block: more than the store
        // saves). The blocks' working set: all of b's panels (the first block's, reused), or
        // when the result does not fit in one block and `b` comes from the host too, only a
        // step's, double-buffered, loaded again for every block (`restream`: DIP traffic for
        // SRAM, e.g. a 8192^3 GEMM on d1, whose b's panels alone would take 8 MiB per core;
        // not when one block fits: its many small steps made a 4096^3 f32 GEMM 1 % faster in
        // 32x the instructions); a's double-buffered; a block's result until the next block
        // is computed (its store, see emit); beside it only operands already on the mesh (a
        // host argument comes as panels only); at least one block's steps (its first panels
        // arrive no later).
        let mut blocks = vec![(0, m)];
        let mut block_steps = steps.unwrap_or(0);
        let mut restream = false;
        let result = op.result(0);
        let only_stored = self.only_stored(result);
        // (Rows over mesh rows, columns over mesh columns, the batch whole: the estimate's
        // replicas of `a` and `b` assume that layout.)
        let blockable = out.split[r - 2] == ROWS && out.split[..r - 2].iter().all(|&s| s == NONE);
        let from_host = |v: Value| -> LResult<bool> {
            Ok(match self.val(v)? {
                Val::Host(h) => !self.is_loaded(h),
                Val::HostT(_) => true,
                _ => false,
            })
        };
        if over.is_none() && only_stored && blockable && self.plan == Plan::Default && from_host(a)? {
            let b_from_host = from_host(b)?;
            let t = self.target;
            let dip = t.dip_hbm_bytes_per_s * t.dips as f64;
            let host_load = |ty: &TensorType, from_host: bool| if from_host { (ty.numel() * ty.elem.bytes()) as f64 / dip } else { 0.0 };
            // Recursive halving sends a panel from its root once per round: log2 of the replicas.
            let spread = |bytes: u64, replicas: u32| (replicas as f64).log2().ceil() * bytes as f64 / link_bytes_per_s(t);
            let times = MatmulTimes {
                store: (rt.numel() * rt.elem.bytes()) as f64 / dip,
                load_a: host_load(&ta, true),
                load_b: host_load(&tb, b_from_host),
                spread_b: spread(eb * core_batch as u64 * k as u64 * nb, out.grid.0),
                host_latency: t.host_latency_s,
            };
            // A core's time for a block of `rows` result rows over K in `steps`: its kernels as
            // the simulator times them, the longer of the FLOPs at the format's rate and the
            // SRAM traffic (operand panels, the accumulator read by every step after the first
            // and written by each), or spreading the block's panels of `a`, if longer.
            let block = |rows: u64, steps: usize| -> f64 {
                let kernels: f64 = (0..steps)
                    .map(|s| {
                        let kb = chunk(k, steps, s).1 as u64;
                        let flops = 2.0 * (rows * nb * kb) as f64 / rate;
                        let acc = er * rows * nb;
                        let read = ea * rows * kb + eb * core_batch as u64 * kb * nb + if s > 0 { acc } else { 0 };
                        flops.max(read as f64 / t.sram_load_bytes_per_s + acc as f64 / t.sram_store_bytes_per_s)
                    })
                    .sum();
                kernels.max(spread(ea * rows * k as u64, out.grid.1))
            };
            // Blocks must win by more than a DIP latency: the estimate leaves out each block's
            // own latencies (its panels' multicasts, the DIP's fixed cost).
            let mut best = steps.map_or(f64::INFINITY, |s| times.estimate(&[block(mb, s)], &[1.0], s, false) - t.host_latency_s);
            // Units of MIN_SHARD_EDGE rows per core, or doublings (a last block computing
            // long enough to count).
            let units = std::iter::successors(Some(out.grid.0 as usize * MIN_SHARD_EDGE), |u| Some(u * 2)).take_while(|&u| 2 * u <= m);
            for sizes in units.flat_map(|u| row_blocks(m, u)) {
                let rows = core_rows(sizes.iter().map(|b| b.1).max().unwrap_or(m));
                let b_panels = |kb: u64, again: bool| if again { 2 * eb * core_batch as u64 * kb * nb } else { eb * core_batch as u64 * k as u64 * nb };
                let shares: Vec<f64> = sizes.iter().map(|&(_, l)| l as f64 / m as f64).collect();
                for again in [false, true].into_iter().filter(|&again| !again || (b_from_host && steps.is_none())) {
                    let need = |kb: u64| b_panels(kb, again) + 2 * ea * rows * kb + 2 * er * rows * nb + extra_bytes;
                    let Some(s) = fewest_steps(&need, budget(on_mesh)).map(|s| s.max(steps.unwrap_or(1))) else { continue };
                    let compute: Vec<f64> = sizes.iter().map(|&(_, l)| block(core_rows(l), s)).collect();
                    let time = times.estimate(&compute, &shares, s, again);
                    if time < best {
                        (best, blocks, block_steps, restream) = (time, sizes.clone(), s, again);
                    }
                }
            }
        }
        if block_steps == 0 {
            return Err(too_big());
        }
        let lead = out.split[..r - 2].to_vec();
        let la = Layout { origin: out.origin, grid: out.grid, split: [lead.clone(), vec![out.split[r - 2], NONE]].concat() };
        let lb = Layout { origin: out.origin, grid: out.grid, split: [lead, vec![NONE, out.split[r - 1]]].concat() };
        let bdims: Vec<usize> = ta.shape[..r - 2].to_vec();
        let z = vec![0; r - 2];
        // Each step's panel of `b`, made by the first block and used by all (by each block
        // for itself when restreamed).
        let mut b_panels: Vec<Value> = Vec::new();
        let mut parts = Vec::new();
        for &(ms, ml) in &blocks {
            let mut block_ty = rt.clone();
            block_ty.shape[r - 2] = ml;
            let mut acc: Option<Value> = None;
            if restream {
                b_panels.clear();
            }
            for s in 0..block_steps {
                let (ks, kl) = chunk(k, block_steps, s);
                let ra = Region { offsets: [z.clone(), vec![ms, ks]].concat(), sizes: [bdims.clone(), vec![ml, kl]].concat() };
                let a_s = self.a_panel(a, over, &la, &ra)?;
                let b_s = match b_panels.get(s) {
                    Some(&v) => v,
                    None => {
                        let rb = Region { offsets: [z.clone(), vec![ks, 0]].concat(), sizes: [bdims.clone(), vec![kl, n]].concat() };
                        let v = match over {
                            // A flat matmul's `[k, n]` as `[1, k, n]`: its panel, reshaped.
                            Some(_) => {
                                let rb2 = Region { offsets: vec![ks, 0], sizes: vec![kl, n] };
                                let l2 = Layout { origin: lb.origin, grid: lb.grid, split: lb.split[1..].to_vec() };
                                let p = self.panel(b, &l2, &rb2)?;
                                let p = self.reshape(p, TensorType::new(rb.sizes.clone(), tb.elem))?;
                                self.reshard(p, &lb, None)?
                            }
                            None => self.panel(b, &lb, &rb)?,
                        };
                        b_panels.push(v);
                        v
                    }
                };
                let mut ins = vec![a_s, b_s];
                ins.extend(acc);
                let mut attrs = vec![];
                if let Some(e) = epilogue.as_ref().filter(|_| s + 1 == block_steps) {
                    for (v, t) in &extras {
                        // The block's rows of an operand that has them (a row block of several).
                        let rows = (t.rank() >= 2 && t.shape[t.rank() - 2] != 1 && blocks.len() > 1).then(|| {
                            let mut region = Region { offsets: vec![0; t.rank()], sizes: t.shape.clone() };
                            (region.offsets[t.rank() - 2], region.sizes[t.rank() - 2]) = (ms, ml);
                            region
                        });
                        let shape = rows.as_ref().map_or(&t.shape, |r| &r.sizes);
                        let l = Self::aligned_layout(&out, &block_ty.shape, shape);
                        ins.push(match &rows {
                            _ if mesh_extras => self.reshard(*v, &l, None)?,
                            Some(region) => self.panel(*v, &l, region)?,
                            None => self.materialize(*v, &l, None)?,
                        });
                    }
                    attrs.push(attr("epilogue", Attr::Str(e.to_string())));
                }
                acc = Some(self.emit("matmul", ins, attrs, block_ty.clone(), out.clone()));
            }
            parts.push(acc.ok_or(PassError::Invalid("matmul with an empty contraction".into()))?);
        }
        if let [whole] = parts[..] {
            return Ok(Val::Mesh(whole));
        }
        // The result is the blocks' concatenation along the rows, stored block by block.
        let stored = self.out.push("d1.store", parts, vec![attr("dim", Attr::Int(r as i64 - 2))], vec![Type::Tensor(rt)]);
        Ok(Val::Stored(stored))
    }

    /// `[d..., k] @ [k, n]` (a convolution's columns times its small weights): every core
    /// multiplies the rows of `a` it holds by all of `b`, so `a` stays where its producer put
    /// it and the result is split like it, `n` whole; `b` is replicated over the block. When
    /// `a` would move anyway (its producer split `k`, or the rows would spread over twice as
    /// many cores: the two largest dims of d...) or `b` does not fit beside `a`'s rows in one
    /// step, the rows become one dim and the matmul is planned like any other
    /// ([`Self::flat_as_2d`]; its epilogue operands reshaped too). Measured on resnet50 at
    /// batch 8 on `tile`: 8.14 ms with every convolution as `[1, M, K]`, 7.36 ms so.
    fn matmul_flat(&mut self, op: &Op, rt: TensorType) -> LResult<Val> {
        let (a, b) = (op.operands[0], op.operands[1]);
        let (ta, tb) = (tensor_type(self.src, a)?, tensor_type(self.src, b)?);
        let r = ta.rank();
        let (k, n) = (ta.shape[r - 1], tb.shape[1]);
        let producer = match self.val(a)? {
            Val::Mesh(m) => Some(self.layout(m)),
            _ => None,
        };
        let mut la = match (self.plan, &producer) {
            (Plan::Default, Some(l)) => l.clone(),
            (Plan::Default, None) => self.place(&ta.shape)?,
            (Plan::Naive, _) => {
                let d = (0..r - 1).max_by_key(|&d| (ta.shape[d], std::cmp::Reverse(d))).unwrap_or(0);
                self.naive_on(&ta.shape, d)
            }
        };
        let axis = la.split[r - 1];
        if axis != NONE {
            la.split[r - 1] = NONE;
            let free = (0..r - 1).filter(|&d| la.split[d] == NONE && ta.shape[d] >= la.axis_len(axis)).max_by_key(|&d| (ta.shape[d], std::cmp::Reverse(d)));
            match free {
                Some(d) => la.split[d] = axis,
                None => {
                    if axis == ROWS || axis == ALL {
                        la.grid.0 = 1;
                    }
                    if axis == COLS || axis == ALL {
                        la.grid.1 = 1;
                    }
                }
            }
        }
        // The rows over more cores, if the producer's split (or what is left of it) takes
        // fewer than half as many: the two largest dims of d..., shards of any size.
        let mut lead: Vec<usize> = (0..r - 1).filter(|&d| ta.shape[d] > 1).collect();
        lead.sort_by_key(|&d| std::cmp::Reverse(ta.shape[d]));
        if self.plan == Plan::Default && !lead.is_empty() {
            let cap = self.caps((ta.numel() * ta.elem.bytes()) as u64);
            let wide = self.place_within(&ta.shape, lead.first().copied(), lead.get(1).copied(), cap, (1, 1))?;
            if wide.num_cores() >= 2 * la.num_cores() {
                la = wide;
            }
        }
        let out = Layout { origin: la.origin, grid: la.grid, split: la.split.clone() };
        let lb = Layout { origin: la.origin, grid: la.grid, split: vec![NONE, NONE] };
        let (ea, eb, er) = (ta.elem.bytes() as u64, tb.elem.bytes() as u64, rt.elem.bytes() as u64);
        let epilogue = matmul_epilogue(op).map_err(PassError::Invalid)?;
        let extras: Vec<(Value, TensorType)> =
            op.operands[2..].iter().map(|&v| tensor_type(self.src, v).map(|t| (v, t))).collect::<Result<_, _>>()?;
        let extra_bytes: u64 = extras.iter().map(|(_, t)| (Self::aligned_layout(&out, &rt.shape, &t.shape).max_shard_numel(&t.shape) * t.elem.bytes()) as u64).sum();
        // A core's rows, and the steps whose working set (double-buffered panels of `a` and
        // `b`, the accumulator, the epilogue's operands) fits half its SRAM beside `a`.
        let rows = (out.max_shard_numel(&rt.shape) / n.max(1)) as u64;
        let resident = ea * rows * k as u64;
        let budget = self.target.usable_sram_bytes().saturating_sub(resident) / 2;
        let need = |kb: u64| 2 * (ea * rows * kb + eb * kb * n as u64) + er * rows * n as u64 + extra_bytes;
        let steps = (1..=k).find(|&s| need(k.div_ceil(s) as u64) <= budget);
        // Where `a` would move anyway, or `b` does not fit beside it whole: the rows as one
        // dim, `[1, rows, k] @ [1, k, n]`, planned like any matmul.
        if self.plan == Plan::Default && (producer.as_ref() != Some(&la) || steps != Some(1)) {
            match self.flat_as_2d(op, &ta, &rt) {
                Ok(Some(v)) => return Ok(v),
                // Not as one dim: the flat plan, if it fits (`dce` drops what was emitted).
                Ok(None) => {}
                Err(PassError::Capacity(_)) if steps.is_some() => {}
                Err(e) => return Err(e),
            }
        }
        let steps = steps.ok_or_else(|| {
            PassError::Capacity(format!(
                "matmul {:?} @ {k}x{n} needs {} B per core even one column at a time on a {}x{} block, but its steps may use {} B per core (half of the {} B its rows of a, {resident} B, leave free): use a larger mesh",
                ta.shape,
                need(1),
                out.grid.0,
                out.grid.1,
                budget,
                budget * 2
            ))
        })?;
        let mut acc: Option<Value> = None;
        for s in 0..steps {
            let (ks, kl) = chunk(k, steps, s);
            let ra = Region { offsets: [vec![0; r - 1], vec![ks]].concat(), sizes: [ta.shape[..r - 1].to_vec(), vec![kl]].concat() };
            let a_s = self.panel(a, &la, &ra)?;
            let b_s = self.panel(b, &lb, &Region { offsets: vec![ks, 0], sizes: vec![kl, n] })?;
            let mut ins = vec![a_s, b_s];
            ins.extend(acc);
            let mut attrs = vec![];
            if let Some(e) = epilogue.as_ref().filter(|_| s + 1 == steps) {
                for (v, t) in &extras {
                    let l = Self::aligned_layout(&out, &rt.shape, &t.shape);
                    ins.push(self.materialize(*v, &l, None)?);
                }
                attrs.push(attr("epilogue", Attr::Str(e.to_string())));
            }
            acc = Some(self.emit("matmul", ins, attrs, rt.clone(), out.clone()));
        }
        Ok(Val::Mesh(acc.ok_or(PassError::Invalid("matmul with an empty contraction".into()))?))
    }

    /// A flat matmul `[d..., k] @ [k, n]` as `[1, rows, k] @ [1, k, n]` (`a`, its result
    /// and the epilogue's operands reshaped); None when an epilogue operand is neither one
    /// value per column nor the result's shape.
    fn flat_as_2d(&mut self, op: &Op, ta: &TensorType, rt: &TensorType) -> LResult<Option<Val>> {
        let r = ta.rank();
        let (rows, k, n) = (ta.numel() / ta.shape[r - 1].max(1), ta.shape[r - 1], rt.shape[r - 1]);
        let mut shapes = Vec::new();
        for &v in &op.operands[2..] {
            let t = tensor_type(self.src, v)?;
            shapes.push(match t.numel() {
                1 => vec![1, 1, 1],
                x if x == n && t.shape.last() == Some(&n) => vec![1, 1, n],
                _ if t.shape == rt.shape => vec![1, rows, n],
                _ => return Ok(None),
            });
        }
        let mut extras = Vec::with_capacity(shapes.len());
        for (&v, shape) in op.operands[2..].iter().zip(shapes) {
            let t = TensorType::new(shape, tensor_type(self.src, v)?.elem);
            let m = self.on_mesh(v)?;
            extras.push((self.reshape(m, t.clone())?, t));
        }
        let m = self.on_mesh(op.operands[0])?;
        let t2 = TensorType::new(vec![1, rows, k], ta.elem);
        let m2 = self.reshape(m, t2.clone())?;
        let rt2 = TensorType::new(vec![1, rows, n], rt.elem);
        Ok(Some(match self.matmul_2d(op, rt2, Some((m2, t2)), Some(extras))? {
            Val::Mesh(y) => Val::Mesh(self.reshape(y, rt.clone())?),
            other => other,
        }))
    }

    /// A batched matmul's result `[B, M, N]` with the batch over mesh rows (the largest
    /// divisor of `B` within `cap`: a whole number of batches per row) and `M` or `N`, whichever
    /// gives more cores, over columns (shards of at least [`MIN_SHARD_EDGE`]): each core then
    /// multiplies its batches only. None for an unbatched one.
    fn batch_split(&self, rt: &TensorType, cap: (u32, u32)) -> Option<Layout> {
        if rt.rank() != 3 || rt.shape[0] < 2 {
            return None;
        }
        let b = rt.shape[0];
        let gr = (1..=b.min(cap.0 as usize)).rev().find(|g| b % g == 0).unwrap_or(1) as u32;
        let cols = |d: usize| ((rt.shape[d] / MIN_SHARD_EDGE).max(1) as u32).min(cap.1);
        let d = if cols(2) >= cols(1) { 2 } else { 1 };
        let gc = cols(d);
        let mut split = vec![ROWS, NONE, NONE];
        split[d] = COLS;
        let shard = Layout { origin: (0, 0), grid: (gr, gc), split: split.clone() }.max_shard_numel(&rt.shape);
        self.block_origin(gr, gc, (shard * rt.elem.bytes()) as u64).map(|origin| Layout { origin, grid: (gr, gc), split })
    }

    /// `reduce_sum` or `reduce_max` (`kind`).
    fn reduce(&mut self, op: &Op, rt: TensorType, kind: &str) -> LResult<Val> {
        let x = op.operands[0];
        let dims: Vec<usize> =
            op.attr("dims").and_then(Attr::as_ints).unwrap_or(&[]).iter().map(|&d| d as usize).collect();
        let keepdim = op.attr("keepdim").and_then(Attr::as_bool).unwrap_or(false);
        let tx = tensor_type(self.src, x)?;
        if let Val::Const(v, _) = self.val(x)? {
            let count: usize = dims.iter().map(|&d| tx.shape[d]).product();
            return Ok(Val::Const(if kind == "reduce_max" { v } else { v * count as f64 }, rt));
        }
        let m = self.on_mesh(x)?;
        self.reduce_mesh(m, &tx, &dims, keepdim, rt, kind)
    }

    /// An embedding whose table's columns for one core would take more than a quarter of its
    /// SRAM: the table's rows are split in `P` parts over mesh rows (its columns over mesh
    /// columns, as many as give shards of at least [`MIN_SHARD_EDGE`]), the ids go whole to
    /// every core, each core looks up the ids of its rows (zeros for the others) and the parts
    /// are summed on the cores that keep the result (one part is nonzero per id: the sum is
    /// that row, exactly). `P` is the
    /// fewest parts that bring a table shard under the quarter.
    fn embedding_parts(&mut self, op: &Op, tt: &TensorType, rt: TensorType) -> LResult<Val> {
        let (v, d) = (tt.shape[0], tt.shape[1]);
        let cap = self.caps((tt.numel() * tt.elem.bytes()) as u64);
        let gc = ((d / MIN_SHARD_EDGE).max(1) as u32).min(cap.1);
        let budget = (self.target.usable_sram_bytes() / 4) as usize;
        let row_bytes = d.div_ceil(gc as usize) * tt.elem.bytes();
        let parts = (1..=cap.0.min(v as u32)).find(|&p| v.div_ceil(p as usize) * row_bytes <= budget).ok_or_else(|| {
            PassError::Capacity(format!(
                "embedding table {:?} does not fit: even in {} row parts over {} columns of cores a part takes more than a quarter of a core's SRAM; use a larger mesh (e.g. tile)",
                tt.shape, cap.0, gc
            ))
        })?;
        let origin = self.block_origin(parts, gc, (v.div_ceil(parts as usize) * row_bytes) as u64).unwrap_or((0, 0));
        let block = |split: Vec<i8>| Layout { origin, grid: (parts, gc), split };
        let ids_rank = rt.rank() - 1;
        let table = self.materialize(op.operands[0], &block(vec![ROWS, COLS]), None)?;
        let ids = self.materialize(op.operands[1], &block(vec![NONE; ids_rank]), None)?;
        let mut psplit = vec![NONE; ids_rank + 2];
        (psplit[0], psplit[ids_rank + 1]) = (ROWS, COLS);
        let pshape: Vec<usize> = std::iter::once(parts as usize).chain(rt.shape.iter().copied()).collect();
        let pt = TensorType::new(pshape, rt.elem);
        let mut attrs = op.attrs.clone();
        attrs.push(attr("vocab_parts", Attr::Int(i64::from(parts))));
        attrs.sort_by(|a, b| a.0.cmp(&b.0));
        let p = self.emit("embedding", vec![table, ids], attrs, pt.clone(), block(psplit));
        // Sum the parts where the result lives (a reduce-scatter: the parts of each block of
        // ids meet on one core) rather than gathering them all to one row of cores.
        let (spread, n) = (1..=ids_rank).map(|d| (d, pt.shape[d])).max_by_key(|&(d, n)| (n, std::cmp::Reverse(d))).unwrap_or((1, 1));
        let mut ssplit = vec![NONE; ids_rank + 2];
        (ssplit[spread], ssplit[ids_rank + 1]) = (ROWS, COLS);
        let scattered = self.reshard(p, &Layout { origin, grid: (parts.min(n as u32), gc), split: ssplit }, None)?;
        self.reduce_mesh(scattered, &pt, &[0], false, rt, "reduce_sum")
    }

    /// `kind` (`reduce_sum` / `reduce_max`) of mesh value `m` (type `tx`) over `dims`.
    fn reduce_mesh(&mut self, m: Value, tx: &TensorType, dims: &[usize], keepdim: bool, rt: TensorType, kind: &str) -> LResult<Val> {
        let l = self.layout(m);
        let dims_attr = || attr("dims", Attr::Ints(dims.iter().map(|&d| d as i64).collect()));
        // 1. Each core reduces its shard: one partial per chunk of a split dim.
        let partial_shape: Vec<usize> = (0..tx.rank())
            .map(|d| if dims.contains(&d) { l.axis_len(l.split[d]) } else { tx.shape[d] })
            .collect();
        let mut cur = self.emit(kind, vec![m], vec![dims_attr()], TensorType::new(partial_shape.clone(), rt.elem), l.clone());
        let mut cl = l.clone();
        let kept: Vec<usize> = (0..tx.rank()).map(|d| if dims.contains(&d) { 1 } else { tx.shape[d] }).collect();
        // 2. Partials of split dims are gathered to the first core of their mesh axis and reduced:
        //    at once, or one mesh axis at a time (columns, then rows) when all of them would
        //    take more than FOLLOW_MAX_BYTES on one core (8075 partials of a row on a tile), or
        //    scattered over a kept dim when they would take more than half a core's SRAM.
        let mut once = l.clone();
        for &d in dims {
            match l.split[d] {
                ROWS => once.grid.0 = 1,
                COLS => once.grid.1 = 1,
                ALL => once.grid = (1, 1),
                _ => {}
            }
            once.split[d] = NONE;
        }
        let mut gathered_bytes = (once.max_shard_numel(&partial_shape) * rt.elem.bytes()) as u64;
        let mut scatter = false;
        // Too many partials for one core: reduce-scatter instead. Each reduced dim's mesh axis
        // (or both, `ALL`) moves to the largest kept dim not yet split, on as many of the
        // axis's cores as that dim has elements, so each core gathers every partial of its
        // slice only: about one shard's bytes.
        if gathered_bytes > self.target.usable_sram_bytes() / 2 {
            let mut scattered = once.clone();
            for &d in dims {
                let axis = l.split[d];
                if axis == NONE {
                    continue;
                }
                let kept = (0..tx.rank())
                    .filter(|e| !dims.contains(e) && scattered.split[*e] == NONE && tx.shape[*e] >= 2)
                    .max_by_key(|&e| (tx.shape[e], std::cmp::Reverse(e)));
                let Some(e) = kept else { continue };
                let n = tx.shape[e];
                match axis {
                    ROWS => scattered.grid.0 = l.grid.0.min(n as u32),
                    COLS => scattered.grid.1 = l.grid.1.min(n as u32),
                    _ => {
                        let block = (l.grid.0 as usize, l.grid.1 as usize);
                        let Some(grid) = naive_grid(naive_cores(n, block), block) else { continue };
                        scattered.grid = grid;
                    }
                }
                scattered.split[e] = axis;
            }
            if scattered != once {
                (once, scatter) = (scattered, true);
                gathered_bytes = (once.max_shard_numel(&partial_shape) * rt.elem.bytes()) as u64;
            }
        }
        // (Not after a scatter: one axis at a time would gather a whole axis's partials again.)
        if !scatter && gathered_bytes > FOLLOW_MAX_BYTES && dims.iter().any(|&d| l.split[d] == ROWS) && dims.iter().any(|&d| l.split[d] == COLS) {
            let mut shape = partial_shape;
            for axis in [COLS, ROWS] {
                let ds: Vec<usize> = dims.iter().copied().filter(|&d| cl.split[d] == axis).collect();
                if ds.is_empty() {
                    continue;
                }
                let mut gl = cl.clone();
                if axis == COLS {
                    gl.grid.1 = 1;
                } else {
                    gl.grid.0 = 1;
                }
                for &d in &ds {
                    gl.split[d] = NONE;
                    shape[d] = 1;
                }
                let gathered = self.reshard(cur, &gl, None)?;
                let ints = ds.iter().map(|&d| d as i64).collect();
                cur = self.emit(kind, vec![gathered], vec![attr("dims", Attr::Ints(ints))], TensorType::new(shape.clone(), rt.elem), gl.clone());
                cl = gl;
            }
        } else if dims.iter().any(|&d| l.split[d] != NONE) {
            let gathered = self.reshard(cur, &once, None)?;
            cur = self.emit(kind, vec![gathered], vec![dims_attr()], TensorType::new(kept, rt.elem), once.clone());
            cl = once;
        }
        if keepdim {
            return Ok(Val::Mesh(cur));
        }
        // 3. Drop the reduced unit dims (a local reshape).
        let split = (0..tx.rank()).filter(|d| !dims.contains(d)).map(|d| cl.split[d]).collect();
        let out = Layout { split, ..cl };
        Ok(Val::Mesh(self.emit("reshape", vec![cur], vec![], rt, out)))
    }

    fn reshape(&mut self, m: Value, rt: TensorType) -> LResult<Value> {
        if self.plan == Plan::Naive {
            return self.reshape_naive(m, rt);
        }
        let t = tensor_type(&self.out, m)?;
        let l = self.layout(m);
        let pairs = reshape_carriable_dims(&t.shape, &rt.shape);
        // 1. Carry the current layout when each split dim has a partner in the output.
        let mut carried = vec![NONE; rt.rank()];
        let mut ok = true;
        for (d, &s) in l.split.iter().enumerate() {
            if s == NONE {
                continue;
            }
            match pairs.iter().find(|(di, _)| *di == d) {
                Some(&(_, dout)) => carried[dout] = s,
                None => ok = false,
            }
        }
        if ok && reshape_is_local(l.grid, &t.shape, &l.split, &rt.shape, &carried) {
            let out = Layout { split: carried, ..l };
            return Ok(self.emit("reshape", vec![m], vec![], rt, out));
        }
        // 2. Reshard onto a layout that splits carriable dims: of the pairs, the two (one over
        //    mesh rows, one over columns) that give the most cores, later dims on ties; a pair
        //    of different sizes (a merged or split group) gets a chunk count dividing both.
        //    Shards of at least MIN_SHARD_EDGE first; if that leaves shards above
        //    FOLLOW_MAX_BYTES, any edge (a tensor that merges a short dim cannot spread
        //    otherwise: [8, 64, 114, 114] -> [8, 64, 57, 2, 57, 2] splits 114 in 3 at most).
        let mut best: Option<(u32, Layout, Layout)> = None;
        let cap = self.caps((t.numel() * t.elem.bytes()) as u64);
        // Whether pair (i, o) can be split in g chunks and stay local.
        let fits = |(i, o): (usize, usize), g: u32| t.shape[i] == rt.shape[o] || (t.shape[i] % g as usize == 0 && rt.shape[o] % g as usize == 0);
        for edge in [MIN_SHARD_EDGE, 1] {
            if best.as_ref().is_some_and(|(cores, _, _)| (rt.numel() * rt.elem.bytes()) as u64 / u64::from(*cores) <= FOLLOW_MAX_BYTES) {
                break;
            }
            let grid = |(i, o): (usize, usize), max: u32| {
                let want = ((t.shape[i].max(rt.shape[o]) / edge).max(1) as u32).min(max);
                (1..=want).rev().find(|&g| fits((i, o), g)).unwrap_or(1)
            };
        for (ci, &cp) in pairs.iter().enumerate().rev() {
            let rows = std::iter::once(None).chain(pairs.iter().enumerate().rev().filter(|(ri, _)| *ri != ci).map(|(_, &p)| Some(p)));
            for rp in rows {
                let gc = grid(cp, cap.1);
                let gr = rp.map(|p| grid(p, cap.0)).unwrap_or(1);
                if best.as_ref().is_some_and(|(cores, _, _)| *cores >= gr * gc) {
                    continue;
                }
                let shard = (gr as usize * gc as usize).max(1);
                let Some(origin) = self.block_origin(gr, gc, (4 * t.numel() / shard) as u64) else { continue };
                let mut in_split = vec![NONE; t.rank()];
                let mut out_split = vec![NONE; rt.rank()];
                in_split[cp.0] = COLS;
                out_split[cp.1] = COLS;
                if let Some((ri, ro)) = rp {
                    in_split[ri] = ROWS;
                    out_split[ro] = ROWS;
                }
                let lin = Layout { origin, grid: (gr, gc), split: in_split };
                let lout = Layout { split: out_split, ..lin.clone() };
                let valid = lin.check(&t.shape).is_ok()
                    && lout.check(&rt.shape).is_ok()
                    && reshape_is_local(lin.grid, &t.shape, &lin.split, &rt.shape, &lout.split);
                if valid {
                    best = Some((gr * gc, lin, lout));
                }
            }
        }
        }
        // 3. Shards still above a quarter of a core's SRAM (a merged group admits few chunks:
        //    the logits [4096, 50257] -> [8, 512, 50257] split 4096 at most 8 ways): one
        //    carriable pair split over all cores of a block (`ALL`), shards of at least
        //    MIN_SHARD_EDGE. (Not for smaller shards: on resnet18 the 2D layouts are faster.)
        let rbytes = (rt.numel() * rt.elem.bytes()) as u64;
        if best.as_ref().is_none_or(|(cores, _, _)| rbytes / u64::from(*cores) > self.target.usable_sram_bytes() / 4) {
            for &(i, o) in pairs.iter().rev() {
                let want = ((t.shape[i].max(rt.shape[o]) / MIN_SHARD_EDGE).max(1) as u32).min(cap.0 * cap.1);
                let block = (2..=want).rev().filter(|&g| fits((i, o), g)).find_map(|g| {
                    let gc = g.min(cap.1);
                    (g % gc == 0 && g / gc <= cap.0).then_some((g / gc, gc))
                });
                let Some((gr, gc)) = block else { continue };
                if best.as_ref().is_some_and(|(cores, _, _)| *cores >= gr * gc) {
                    continue;
                }
                let Some(origin) = self.block_origin(gr, gc, rbytes / u64::from(gr * gc)) else { continue };
                let (mut in_split, mut out_split) = (vec![NONE; t.rank()], vec![NONE; rt.rank()]);
                (in_split[i], out_split[o]) = (ALL, ALL);
                let lin = Layout { origin, grid: (gr, gc), split: in_split };
                let lout = Layout { split: out_split, ..lin.clone() };
                if lin.check(&t.shape).is_ok() && lout.check(&rt.shape).is_ok() && reshape_is_local(lin.grid, &t.shape, &lin.split, &rt.shape, &lout.split) {
                    best = Some((gr * gc, lin, lout));
                }
            }
        }
        if let Some((cores, lin, lout)) = best {
            let moved = self.reshard(m, &lin, None)?;
            let out = self.emit("reshape", vec![moved], vec![], rt.clone(), lout);
            // A merged group whose size admits few chunks (e.g. 2 x 197 -> 394) leaves the
            // result on a narrow block; its consumers would follow it there and pile up in a
            // few cores' SRAM. Spread it to the default layout when that has 4x the cores.
            let spread = self.place(&rt.shape)?;
            let shard_bytes = (rt.numel() * rt.elem.bytes()) as u64 / cores as u64;
            if spread.grid.0 * spread.grid.1 >= 4 * cores && shard_bytes >= SPREAD_MIN_BYTES {
                return self.reshard(out, &spread, None);
            }
            return Ok(out);
        }
        // Otherwise gather the whole tensor on one core and reshape it there.
        let single = Layout::single(l.origin, t.rank());
        let g = self.reshard(m, &single, None)?;
        Ok(self.emit("reshape", vec![g], vec![], rt.clone(), Layout::single(l.origin, rt.rank())))
    }
}

/// The naive plan ([`Plan::Naive`]).
impl Lowering<'_> {
    /// The block a row split of `shape` spreads over: the largest the default placement would
    /// give it (`caps`: the largest block, or the usable grid on a multi-chip target).
    fn naive_block(&self, shape: &[usize]) -> (usize, usize) {
        let (r, c) = self.caps(4 * shape.iter().product::<usize>() as u64);
        (r as usize, c as usize)
    }

    /// The row split of a tensor shape: the leading dim (any but the last) that spreads over
    /// the most cores, the outermost on ties; the last dim when no leading dim has two
    /// elements.
    fn naive(&self, shape: &[usize]) -> Layout {
        let rank = shape.len();
        let block = self.naive_block(shape);
        let cores = |d: usize| naive_cores(shape[d], block);
        let mut best = (0..rank.saturating_sub(1)).rev().max_by_key(|&d| cores(d));
        if best.is_none_or(|d| cores(d) < 2) && rank > 0 {
            best = Some(rank - 1);
        }
        match best {
            Some(d) => self.naive_on(shape, d),
            None => Layout::single((0, 0), rank),
        }
    }

    /// Dim `d` of `shape` split over all cores of a block at the grid's origin: as many as `d`
    /// has elements, at most [`Self::naive_block`], a whole number of its rows beyond one row.
    fn naive_on(&self, shape: &[usize], d: usize) -> Layout {
        let block = self.naive_block(shape);
        let g = naive_cores(shape[d], block);
        let mut split = vec![NONE; shape.len()];
        if g < 2 {
            return Layout { origin: (0, 0), grid: (1, 1), split };
        }
        split[d] = ALL;
        let grid = naive_grid(g, block).unwrap_or((1, 1));
        Layout { origin: (0, 0), grid, split }
    }

    /// A transpose whose result is row-split: the operand is resharded to the result's split,
    /// permuted back.
    fn transpose_naive(&mut self, m: Value, perm: &[usize], rt: TensorType) -> LResult<Value> {
        let out = self.naive(&rt.shape);
        let mut split = vec![NONE; perm.len()];
        for (i, &p) in perm.iter().enumerate() {
            split[p] = out.split[i];
        }
        let moved = self.reshard(m, &Layout { split, ..out.clone() }, None)?;
        let ints = perm.iter().map(|&p| p as i64).collect();
        Ok(self.emit("transpose", vec![moved], vec![attr("perm", Attr::Ints(ints))], rt, out))
    }

    /// A local reshape onto the result's row split when an operand dim carries it (the
    /// operand resharded to that dim's split first); else onto the carriable dim pair with the
    /// most cores whose chunk count divides both sizes; else on one core.
    fn reshape_naive(&mut self, m: Value, rt: TensorType) -> LResult<Value> {
        let t = tensor_type(&self.out, m)?;
        let want = self.naive(&rt.shape);
        let block = self.naive_block(&rt.shape);
        let mut best: Option<((bool, usize), Layout, Layout)> = None;
        for (di, dout) in reshape_carriable_dims(&t.shape, &rt.shape) {
            let (ni, no) = (t.shape[di], rt.shape[dout]);
            let most = naive_cores(ni.min(no), block);
            let fits = |g: usize| (ni == no || (ni % g == 0 && no % g == 0)) && naive_grid(g, block).is_some();
            let Some(g) = (2..=most).rev().find(|&g| fits(g)) else { continue };
            let grid = naive_grid(g, block).unwrap_or((1, 1));
            let (mut si, mut so) = (vec![NONE; t.rank()], vec![NONE; rt.rank()]);
            (si[di], so[dout]) = (ALL, ALL);
            let lin = Layout { origin: (0, 0), grid, split: si };
            let lout = Layout { split: so, ..lin.clone() };
            let key = (lout == want, g);
            if reshape_is_local(grid, &t.shape, &lin.split, &rt.shape, &lout.split) && best.as_ref().is_none_or(|(k, _, _)| key > *k) {
                best = Some((key, lin, lout));
            }
        }
        let (lin, lout) = match best {
            Some((_, lin, lout)) => (lin, lout),
            None => (Layout::single((0, 0), t.rank()), Layout::single((0, 0), rt.rank())),
        };
        let moved = self.reshard(m, &lin, None)?;
        Ok(self.emit("reshape", vec![moved], vec![], rt, lout))
    }
}

/// Cores the row split of a dim of `n` elements uses on a `block` (see
/// `Lowering::naive_on`).
fn naive_cores(n: usize, (r, c): (usize, usize)) -> usize {
    if n >= r * c {
        r * c
    } else if n >= c {
        n / c * c
    } else {
        n
    }
}

/// The block of exactly `g` cores a row split uses on a `block`, if there is one: `1 x g` up
/// to a row of the block, else whole rows.
fn naive_grid(g: usize, (r, c): (usize, usize)) -> Option<(u32, u32)> {
    if g <= c {
        Some((1, g as u32))
    } else if g % c == 0 && g / c <= r {
        Some(((g / c) as u32, c as u32))
    } else {
        None
    }
}

/// Mesh lines (rows or columns, at most `max`) a dim of `n` elements splits over in shards of
/// at least `edge` elements (one line at least): `place_within`'s grid.
fn grid_for(n: usize, edge: usize, max: u32) -> u32 {
    ((n / edge).max(1) as u32).min(max)
}

/// The row edge (`place_within`) of the result of a matmul of `a` on one block, computing at
/// `rate` FLOP/s a core (`matmul_rate`) for `seconds` on the largest block: [`MIN_SHARD_EDGE`]
/// on the matrix units (8 x 8 tiles); 1 on the FP32 SIMD unit, whose 16 lanes run along a row
/// (the result's columns) so a shard of any number of rows fills them, for an unbatched matmul
/// computing for at least [`THIN_ROWS_MIN_MATMUL_S`] (resnet50's last stage at batch 2: 98 rows
/// on 16 mesh rows, not 12). A batched one keeps the edge, so its batch can go over the rows
/// (`batch_split`).
fn matmul_row_edge(target: &Target, a: &TensorType, rate: f64, seconds: f64) -> usize {
    let unbatched = a.rank() == 2 || a.shape[0] == 1;
    if unbatched && seconds >= THIN_ROWS_MIN_MATMUL_S && rate < target.matrix_flops_per_cycle * target.clock_hz {
        1
    } else {
        MIN_SHARD_EDGE
    }
}

/// Seconds matmul `op` of `f` computes on `cores` cores at the multiply-add rate of its
/// operands' formats (the compute term alone: what decides whether it spreads).
fn matmul_seconds(target: &Target, f: &Func, op: &Op, cores: f64) -> f64 {
    let (Some(ta), Some(tb), Some(rt)) = (f.tensor(op.operands[0]), f.tensor(op.operands[1]), f.tensor(op.result(0))) else {
        return 0.0;
    };
    let k = ta.shape.last().copied().unwrap_or(1);
    (2 * rt.numel() * k) as f64 / (cores * matmul_rate(target, ta.elem, tb.elem))
}

/// A core's multiply-add rate (FLOP/s) for matmul operands of these formats: the matrix units
/// for two storage formats, else FP32 on the SIMD unit.
fn matmul_rate(target: &Target, a: ElemType, b: ElemType) -> f64 {
    let dt = |e: ElemType| crate::emit::dtype(e).unwrap_or(DType::F32);
    core_flops_per_s(target, &KernelOp::MatMul { accumulate: true, epilogue: vec![] }, &[dt(a), dt(b)])
}

/// Equal rectangles for `parts` parts on a `rows x cols` usable grid: `pr x pc` of them, each
/// `rows / pr x cols / pc` cores and at least [`MAX_BLOCK_EDGE`] a side, the fewest left over
/// (`pr * pc - parts`), then the squarest; part `k` the `k`-th in row-major order. Returns
/// `(pc, (rows / pr, cols / pc))`, or `None` when no such split exists (8 parts on a tile's
/// 85 x 95: 2 x 4 of 42 x 23).
fn part_rects((rows, cols): (u32, u32), parts: usize) -> Option<(u32, (u32, u32))> {
    let parts = parts as u32;
    (1..=parts)
        .map(|pr| (pr, parts.div_ceil(pr)))
        .map(|(pr, pc)| (pr, pc, rows / pr, cols / pc))
        .filter(|&(_, _, rh, cw)| rh >= MAX_BLOCK_EDGE && cw >= MAX_BLOCK_EDGE)
        .min_by(|a, b| {
            let aspect = |&(_, _, rh, cw): &(u32, u32, u32, u32)| f64::from(rh.max(cw)) / f64::from(rh.min(cw));
            (a.0 * a.1 - parts).cmp(&(b.0 * b.1 - parts)).then(aspect(a).total_cmp(&aspect(b)))
        })
        .map(|(_, pc, rh, cw)| (pc, (rh, cw)))
}

/// The results of `src`'s 2D transposes of function arguments that only matmuls with a 2D
/// `a` take, as `b` ([`Val::HostT`]), none returned, each with the fewest rows of `a` among
/// those matmuls.
fn streamed_transposes(src: &Func) -> HashMap<Value, usize> {
    let is_arg = |v: Value| v.index() < src.num_args;
    // Some(fewest rows so far) while every use is such a matmul.
    let mut uses: HashMap<Value, Option<usize>> = src
        .ops
        .iter()
        .filter(|o| {
            let arg = o.operands.first().filter(|&&v| is_arg(v) && src.tensor(v).is_some_and(|t| t.rank() == 2));
            o.name == "dojo.transpose" && arg.is_some() && o.attr("perm").and_then(Attr::as_ints) == Some(&[1, 0][..])
        })
        .map(|o| (o.result(0), Some(usize::MAX)))
        .collect();
    for o in &src.ops {
        for (i, v) in o.operands.iter().enumerate() {
            if let Some(fewest) = uses.get_mut(v) {
                let a = src.tensor(o.operands[0]).filter(|a| a.rank() == 2);
                let ok = o.name == "dojo.matmul" && i == 1 && o.operands[0] != *v;
                *fewest = fewest.zip(a.filter(|_| ok)).map(|(f, a)| f.min(a.shape[0]));
            }
        }
    }
    for r in &src.returns {
        uses.remove(r);
    }
    // (An unused transpose has no rows: 0.)
    uses.into_iter().filter_map(|(v, rows)| Some((v, if rows? == usize::MAX { 0 } else { rows? }))).collect()
}

/// The `offsets` / `sizes` attributes of a `d1.load` or `d1.reshard` of box `r`.
fn box_attrs(r: &Region) -> Vec<(String, Attr)> {
    let ints = |v: &[usize]| Attr::Ints(v.iter().map(|&x| x as i64).collect());
    vec![attr("offsets", ints(&r.offsets)), attr("sizes", ints(&r.sizes))]
}

/// Estimated times of a matmul, seconds: storing the result and loading `a` and `b` through
/// the DIPs (0 when on the mesh already), spreading `b`'s panels to all rows of the block, the
/// fixed cost of a DIP transfer.
struct MatmulTimes {
    store: f64,
    load_a: f64,
    load_b: f64,
    spread_b: f64,
    host_latency: f64,
}

impl MatmulTimes {
    /// In row blocks taking `compute` each (a core's kernels), holding `shares` of the rows,
    /// K in `steps`: the first block ends when its compute does, started once its first
    /// panels are loaded and spread, or when the last of `b` (and of its rows of `a`) is in
    /// and computed (loading and spreading overlap across panels); the others compute back to
    /// back; the last block's store follows, nothing hides it. With `b` loaded again for
    /// every block (`restream`), a later block takes at least its DIP traffic (all of `b`,
    /// its rows of `a`, the block before's store) and spreading `b`. Never less than the DIP
    /// traffic. Infinite if a block computes for less than twice the fixed cost of a DIP
    /// transfer (its loads', its store's): it could not hide the transfers around it, and a
    /// DIP works in program order, so a store waiting for the slowest core holds up the loads
    /// behind it.
    fn estimate(&self, compute: &[f64], shares: &[f64], steps: usize, restream: bool) -> f64 {
        if compute.len() > 1 && compute.iter().any(|&c| c < 2.0 * self.host_latency) {
            return f64::INFINITY;
        }
        let steps = steps as f64;
        let load = self.load_b + self.load_a * shares[0];
        let first_panels = (load + self.spread_b) / steps;
        let all_panels = load.max(self.spread_b) + load.min(self.spread_b) / steps;
        let first_block = (first_panels + compute[0]).max(all_panels + compute[0] / steps);
        let rest: f64 = (1..compute.len())
            .map(|i| match restream {
                true => compute[i].max(self.load_b + (self.load_a * shares[i] + self.store * shares[i - 1])).max(self.spread_b),
                false => compute[i],
            })
            .sum();
        let b_loads = if restream { compute.len() as f64 } else { 1.0 };
        (first_block + rest + self.store * shares[shares.len() - 1]).max(self.load_a + self.load_b * b_loads + self.store)
    }
}

/// Row block schedules (`(first row, rows)` per block) for a matmul of `m` rows whose result
/// only goes to the host.
///
/// In one block the result leaves through the DIPs after the last step, all at once, with
/// nothing left to overlap. In row blocks, each its own SUMMA over all of K (the k-order of
/// every sum unchanged), each block is stored while the next computes; `b`'s panels stay on
/// the mesh for all blocks, so the first block waits for all of `b`. A schedule is blocks of
/// `g` units of `unit` rows, the last ones halving down to one unit: the last store, which
/// nothing hides, is the smallest, and a block still outlasts the store of one twice its size
/// while storing the result takes less than half the compute. The first block also takes the
/// rows that make no whole unit.
fn row_blocks(m: usize, unit: usize) -> Vec<Vec<(usize, usize)>> {
    let units = m / unit;
    let mut schedules: Vec<Vec<(usize, usize)>> = Vec::new();
    let mut g = 1;
    while g < units {
        // From the end: 1, 1, 2, 4, ... units, at most g, then blocks of g.
        let mut sizes = Vec::new();
        let (mut left, mut next) = (units, 1);
        while left > 0 {
            let s = next.min(g);
            if s > left {
                // What is left joins the first block.
                if let Some(first) = sizes.last_mut() {
                    *first += left;
                }
                break;
            }
            sizes.push(s);
            left -= s;
            if sizes.len() > 1 {
                next = (next * 2).min(g);
            }
        }
        let mut start = m;
        let mut rows: Vec<(usize, usize)> = sizes
            .iter()
            .enumerate()
            .map(|(i, &u)| {
                let l = u * unit + if i + 1 == sizes.len() { m % unit } else { 0 };
                start -= l;
                (start, l)
            })
            .collect();
        rows.reverse();
        if schedules.last() != Some(&rows) {
            schedules.push(rows);
        }
        g *= 2;
    }
    schedules
}
