//! The `Device` trait and `SimMesh`, a functional + timing simulator of a Dojo mesh.
//!
//! # Functional model
//!
//! [`SimMesh::execute`] validates the Program ([`Program::validate`]), checks the host
//! inputs against `Program::inputs`, then runs the instructions on `f32` arrays: a live
//! buffer's values start as zeros (unless every element is written before any is read),
//! host outputs zero until a `Store` or `HostCopy` writes them. Kernel semantics are documented on [`crate::KernelOp`]; NaN and infinities
//! propagate as in eager PyTorch. Instructions that touch disjoint buffers run in parallel
//! (dependency levels of a window of the Program, see `compute`; writers of one buffer one
//! after another, in program order), and a copy of a whole
//! buffer or a reshape shares its source's array until either is written, so the values are
//! those of running the Program in order: the same Program and inputs always give
//! bit-identical outputs and Profile, whatever the thread count.
//!
//! # Timing model (v2)
//!
//! Time is `f64` seconds. Instructions are list-scheduled in program order onto exclusive
//! resources, each busy until a known time (kept only for the cores and links a Program
//! touches, so an ExaPOD costs nothing until used):
//!
//! - each core's compute pipeline (kernels, fills, same-core copies);
//! - each core's NoC injection port and ejection port (the router reads one 64 B packet
//!   from SRAM and writes one into SRAM per cycle: one link's bandwidth each);
//! - each directed mesh link; each directed D1 edge (`chip_edge_bytes_per_s`, shared by all
//!   the links crossing between the same two chips) and tile edge (`tile_edge_bytes_per_s`);
//! - `target.dips` host/HBM channels (Load/Store take the channel that can start it first,
//!   lowest index on ties; a transfer ready early may use an idle gap a channel left before a
//!   later reservation, [`DIP_GAPS`] of the latest gaps remembered per channel).
//!
//! Synchronisation: every buffer has `ready` (its last write completes), `written` (its
//! last whole-buffer write completes) and `read_done` (its last read completes). An
//! instruction waits for the producers of what it reads (`ready`), for the readers of what
//! it overwrites (`read_done`, write-after-read) and, for whole-buffer writes, for the
//! previous writers (`ready`, write-after-write). Box copies into disjoint parts of one
//! buffer may run concurrently but wait for the last whole-buffer write (`written`).
//!
//! - **Kernel** on core `c`: starts at `max(core free, ready[inputs], ready[out],
//!   read_done[out])`; lasts `max(flops / core peak, bytes_read / sram_load + bytes_written
//!   / sram_store)`, the core peak being that of the inputs' format
//!   ([`crate::roofline::core_flops_per_s`]: the matrix rate for a matmul of two storage-format
//!   operands — bf16, CFloat — and the FP32 rate for everything else), with
//!   matmul flops `2 m n k`, elementwise one per output element, reduction one per input
//!   element, and Copy/Transpose/Reshape none. An accumulating matmul also reads its output.
//!   A matmul's epilogue adds its steps' FLOPs at the FP32 rate (after the products) and its
//!   extra inputs' reads, but no second pass over the output.
//! - **Copy between cores** (cut-through over the XY route, reserved as a whole): starts
//!   when the source is ready, the destination's readers are done, and the sender's
//!   injection port, the receiver's ejection port, every link of the route and every chip
//!   and tile edge it crosses are free (each such resource remembers [`LANE_GAPS`] idle gaps
//!   before its last reservation, which a transfer ready early may use, as a DIP channel
//!   does: copies later in program order are not held up by a link reserved further ahead
//!   for an earlier copy still waiting on another link). Serialisation is `bytes` over the slowest of them
//!   (`link_bytes_per_cycle * clock_hz` for the links and ports); ports and links stay busy
//!   for the serialisation, an edge for `bytes / its bandwidth` (several rows share it).
//!   The data lands after the serialisation plus the latency `(injection_latency_cycles +
//!   hops * hop_latency_cycles) / clock_hz + chip crossings * chip_edge_latency_s + tile
//!   crossings * tile_edge_latency_s`. So two transfers sharing a link serialise
//!   (contention), and a core receiving from four neighbours at once drains them one by one.
//! - **Copy on one core**: a core operation at SRAM bandwidth (`bytes / load + bytes /
//!   store`).
//! - **Load / Store**: a DIP channel is busy for `bytes / dip_hbm_bytes_per_s` from the
//!   earliest time it is free that long at or after the transfer is ready (not in program
//!   order: a store reserved for when its data is computed does not hold up a load that is
//!   ready now and fits before it); the data is
//!   there `host_latency_s` later (the fixed cost is pipelined across transfers, as a DMA
//!   engine with several descriptors in flight would). The mesh path between the DIP and
//!   the core is not modelled. A Store waits for `ready[buf]`, a Load for `read_done[buf]`.
//! - **Fill**: a core operation writing the buffer at store bandwidth.
//! - **Alloc / Free / HostCopy**: no time.
//!
//! `simulated_seconds` is the latest end time of any operation. Busy time per core counts
//! kernels, fills and same-core copies. The timing never depends on data, so
//! [`SimMesh::timing_only`] skips the arithmetic and gives the same Profile.
//!
//! # Roofline
//!
//! While timing, the simulator tallies each instruction's work per compiler op (the
//! Program's optional provenance, `op_names` / `instr_op`) and for the whole Program; the
//! Profile gives each op's simulated span, its bounds and efficiency ([`OpProfile`]), and
//! the Program's ([`Profile::roofline`], [`Profile::roofline_efficiency`]). See
//! [`crate::roofline`] for the bounds.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::cfloat::{self, Codec, Flags, Format, Rounding};
use crate::crew::{self, Crew};
use crate::error::RuntimeError;
use crate::kernels;
use crate::program::{BufId, DType, Instr, KernelOp, Program, ProgramStats, Region, ValidProgram};
use crate::roofline::{self, core_flops_per_s, link_bytes_per_s, OpProfile, Roofline, Tally};
use crate::shape::{self, numel, show};
use crate::target::{CoreId, Link};

/// A host tensor: shape and row-major `f32` data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HostTensor {
    /// Dimensions, row-major.
    pub shape: Vec<usize>,
    /// `shape.iter().product()` values (empty from a timing-only run).
    pub data: Vec<f32>,
}

/// Something that runs Programs: the simulator today, hardware or a remote mesh later.
pub trait Device {
    /// Runs `program` on host `inputs` (shape, row-major data), one per
    /// `program.inputs`, returning one tensor per `program.outputs` and the Profile.
    fn execute(
        &mut self,
        program: &Program,
        inputs: &[(&[usize], &[f32])],
    ) -> Result<(Vec<HostTensor>, Profile), RuntimeError>;
}

/// The simulated mesh. Stateless between runs; the machine is the Program's target.
#[derive(Clone, Debug)]
pub struct SimMesh {
    functional: bool,
    /// Per-run biases of the Program's scales (None: each scale's own `bias`).
    biases: Option<Vec<u8>>,
    /// Converts copy their input unrounded and only record its amax (calibration).
    calibrate: bool,
    /// The seed of `KernelOp::Random`.
    seed: u64,
}

impl Default for SimMesh {
    fn default() -> SimMesh {
        SimMesh::new()
    }
}

impl SimMesh {
    /// A simulator that computes the outputs and times the Program.
    pub fn new() -> SimMesh {
        SimMesh { functional: true, biases: None, calibrate: false, seed: 0 }
    }

    /// A simulator that only times the Program: no arithmetic, no buffer memory; `execute`
    /// still checks the input shapes but returns outputs with empty `data`. The Profile is
    /// identical to a functional run's (timing never depends on values).
    pub fn timing_only() -> SimMesh {
        SimMesh { functional: false, biases: None, calibrate: false, seed: 0 }
    }

    /// Runs with these biases for the Program's scales (one per `Program::scales`, e.g.
    /// chosen from an amax history) instead of the compile-time ones.
    pub fn with_scale_biases(mut self, biases: Vec<u8>) -> SimMesh {
        self.biases = Some(biases);
        self
    }

    /// Runs with this seed for the Program's `Random` kernels (default 0): the same seed
    /// gives the same values.
    pub fn with_seed(mut self, seed: u64) -> SimMesh {
        self.seed = seed;
        self
    }

    /// A calibration run: every `Convert` passes its input through unrounded and records its
    /// amax in [`Profile::numerics`], so biases can be chosen for a real run.
    pub fn calibrating(mut self) -> SimMesh {
        self.calibrate = true;
        self
    }

    /// Times `program` without data (a timing-only run that needs no inputs).
    pub fn time(&self, program: &Program) -> Result<Profile, RuntimeError> {
        let stats = program.validate()?;
        Ok(profile_of(program, &stats, time(program)))
    }

    fn numerics(&self) -> Numerics<'_> {
        Numerics { biases: self.biases.as_deref(), calibrate: self.calibrate, seed: self.seed }
    }
}

/// How a run treats the Program's `Convert` kernels.
#[derive(Default)]
struct Numerics<'a> {
    biases: Option<&'a [u8]>,
    calibrate: bool,
    seed: u64,
}

/// What the conversions of one scale (one low-precision tensor) saw in a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScaleProfile {
    /// The scale's name (`Program::scales`).
    pub name: String,
    /// Its storage dtype.
    pub dtype: DType,
    /// The bias the run used.
    pub bias: u8,
    /// Largest magnitude converted (NaN ignored; 0 when nothing was converted).
    #[serde(with = "crate::program::json_f32")]
    pub amax: f32,
    /// Elements whose conversion raised each flag (all zero in a calibration run).
    pub flags: Flags,
}

/// The hardware unit an operation occupies.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Unit {
    /// A core's compute pipeline.
    Core(CoreId),
    /// A core's NoC injection port (outgoing copies).
    Dma(CoreId),
    /// A host/HBM DIP channel.
    Dip(u32),
}

/// One timed operation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TimelineEvent {
    /// Instruction index.
    pub instr: usize,
    /// What ran, e.g. `MatMul`, `Copy`, `Load`.
    pub name: String,
    /// Where it ran.
    pub unit: Unit,
    /// Start, seconds.
    pub start_s: f64,
    /// End (data available), seconds.
    pub end_s: f64,
    /// The compiler op it belongs to: an index into [`Profile::ops`] (and the Program's
    /// `op_names`), if the Program records provenance.
    #[serde(default)]
    pub op: Option<u32>,
}

/// What a simulated run cost.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    /// Latest end time of any operation, seconds.
    pub simulated_seconds: f64,
    /// Cores that allocate at least one buffer.
    pub cores_used: usize,
    /// Largest per-core peak of live buffer bytes.
    pub peak_sram_bytes: u64,
    /// Peak live buffer bytes per used core, sorted by core.
    pub peak_sram_per_core: Vec<(CoreId, u64)>,
    /// Bytes summed over mesh links (payload x hops).
    pub mesh_bytes: u64,
    /// Payload bytes of core-to-core copies (same-core copies excluded).
    pub copy_bytes: u64,
    /// Bytes of Loads and Stores (host/HBM traffic).
    pub host_bytes: u64,
    /// FLOPs of all kernels, as charged by the timing model.
    pub flops: u64,
    /// Seconds each used core's compute pipeline is busy, sorted by core.
    pub busy_seconds_per_core: Vec<(CoreId, f64)>,
    /// Instructions in the Program.
    pub instructions: usize,
    /// Bytes carried by each used directed link, sorted by link.
    pub link_bytes: Vec<(Link, u64)>,
    /// The whole Program's roofline (its bound never exceeds `simulated_seconds`).
    #[serde(default)]
    pub roofline: Roofline,
    /// `roofline.seconds`: the physical lower bound of this Program's time.
    #[serde(default)]
    pub roofline_seconds: f64,
    /// `roofline_seconds / simulated_seconds` (`None` when nothing was timed).
    #[serde(default)]
    pub roofline_efficiency: Option<f64>,
    /// The binding term's name (`compute`, `sram`, `injection`, `bisection`, `latency`,
    /// `host`), `None` when nothing was timed.
    #[serde(default)]
    pub roofline_bound: Option<String>,
    /// Per compiler op, in the Program's `op_names` order (empty without provenance).
    #[serde(default)]
    pub ops: Vec<OpProfile>,
    /// Per low-precision tensor (`Program::scales`, in order): the bias used, the amax seen
    /// and the status flags raised (empty from a timing-only run).
    #[serde(default)]
    pub numerics: Vec<ScaleProfile>,
    /// Every timed operation, in instruction order.
    pub timeline: Vec<TimelineEvent>,
}

impl Profile {
    /// The timeline in Chrome trace-event JSON (open in `chrome://tracing` or Perfetto):
    /// one thread per core pipeline, injection port and DIP channel; times in microseconds.
    /// An event's `args` carry its instruction index and, with provenance, its op's name.
    pub fn chrome_trace_json(&self) -> String {
        let mut units: Vec<&Unit> = self.timeline.iter().map(|e| &e.unit).collect();
        units.sort();
        units.dedup();
        let tid = |u: &Unit| units.binary_search(&u).unwrap_or(0);
        let mut events = Vec::with_capacity(units.len() + self.timeline.len());
        for (i, u) in units.iter().enumerate() {
            let name = match u {
                Unit::Core(c) => format!("core {c}"),
                Unit::Dma(c) => format!("dma {c}"),
                Unit::Dip(k) => format!("dip {k}"),
            };
            events.push(serde_json::json!({
                "name": "thread_name", "ph": "M", "pid": 0, "tid": i, "args": {"name": name}
            }));
        }
        for e in &self.timeline {
            let mut args = serde_json::json!({"instr": e.instr});
            if let Some(op) = e.op.and_then(|k| self.ops.get(k as usize)) {
                args["op"] = serde_json::Value::String(op.name.clone());
            }
            events.push(serde_json::json!({
                "name": e.name, "ph": "X", "pid": 0, "tid": tid(&e.unit),
                "ts": e.start_s * 1e6, "dur": (e.end_s - e.start_s) * 1e6,
                "args": args
            }));
        }
        serde_json::Value::Array(events).to_string()
    }
}

impl Device for SimMesh {
    fn execute(
        &mut self,
        program: &Program,
        inputs: &[(&[usize], &[f32])],
    ) -> Result<(Vec<HostTensor>, Profile), RuntimeError> {
        // A Program's own faults are reported before the inputs' (they are the deeper cause).
        let checked = check_inputs(program, inputs, self.functional);
        let stats = program.validate()?;
        checked?;
        if !self.functional {
            let outputs = program.outputs.iter().map(|d| HostTensor { shape: d.shape.clone(), data: Vec::new() }).collect();
            return Ok((outputs, profile_of(program, &stats, time(program))));
        }
        // The values and the timing never depend on each other: they run side by side.
        let (data, sim) = rayon::join(|| compute(program, &Plan::new(program), false, inputs, &self.numerics()), || time(program));
        let (outputs, numerics) = data?;
        let mut profile = profile_of(program, &stats, sim);
        profile.numerics = numerics;
        Ok((host_outputs(program, outputs), profile))
    }
}

impl SimMesh {
    /// The values of a run of `program` on `inputs` and what its conversions saw (a Profile's
    /// `numerics`), without timing it: the timing never depends on the values, so a caller
    /// that runs one Program many times takes its Profile once ([`SimMesh::profile`]).
    pub fn values(
        &self,
        program: &ValidProgram,
        inputs: &[(&[usize], &[f32])],
    ) -> Result<(Vec<HostTensor>, Vec<ScaleProfile>), RuntimeError> {
        let p = program.program();
        check_inputs(p, inputs, true)?;
        let (outputs, numerics) = compute(p, program.plan(), true, inputs, &self.numerics())?;
        Ok((host_outputs(p, outputs), numerics))
    }

    /// The Profile of every run of `program`, `numerics` left empty (they are the values'
    /// business: [`SimMesh::values`]).
    pub fn profile(&self, program: &ValidProgram) -> Profile {
        profile_of(program.program(), program.stats(), time(program.program()))
    }
}

/// Checks the host inputs against the Program's declarations (their data too if `functional`).
fn check_inputs(program: &Program, inputs: &[(&[usize], &[f32])], functional: bool) -> Result<(), RuntimeError> {
    if inputs.len() != program.inputs.len() {
        return Err(RuntimeError::new(format!(
            "the Program takes {} input tensor(s) but {} were passed",
            program.inputs.len(),
            inputs.len()
        )));
    }
    for (i, ((shape, data), decl)) in inputs.iter().zip(&program.inputs).enumerate() {
        if *shape != decl.shape.as_slice() {
            return Err(RuntimeError::new(format!(
                "input {i}: expected shape {} ({:?}) but got {}",
                show(&decl.shape),
                decl.dtype,
                show(shape)
            )));
        }
        let n = numel(shape).unwrap_or(usize::MAX);
        if functional && data.len() != n {
            return Err(RuntimeError::new(format!(
                "input {i}: shape {} needs {n} values but the data has {}",
                show(shape),
                data.len()
            )));
        }
    }
    Ok(())
}

/// The host outputs of a functional run.
fn host_outputs(program: &Program, outputs: Vec<Vec<f32>>) -> Vec<HostTensor> {
    program.outputs.iter().zip(outputs).map(|(decl, data)| HostTensor { shape: decl.shape.clone(), data }).collect()
}

/// The Profile of the timing pass `sim` over a valid `program` (`numerics` empty).
fn profile_of(program: &Program, stats: &ProgramStats, mut sim: Sim<'_>) -> Profile {
    let t = &program.target;
    let mut busy: BTreeMap<CoreId, f64> = stats
        .peak_sram_per_core
        .iter()
        .map(|(c, _)| (c.clone(), 0.0))
        .collect();
    for (c, s) in sim.busy {
        busy.insert(c, s);
    }
    for op in program.instr_op.iter().flatten() {
        sim.per_op[*op as usize].instructions += 1;
    }
    let ops: Vec<OpProfile> = sim
        .per_op
        .iter()
        .zip(&program.op_names)
        .map(|(tally, name)| tally.op_profile(t, name))
        .collect();
    let roofline = sim.total.roofline(t);
    Profile {
        simulated_seconds: sim.makespan,
        cores_used: stats.cores_used,
        peak_sram_bytes: stats
            .peak_sram_per_core
            .iter()
            .map(|(_, b)| *b)
            .max()
            .unwrap_or(0),
        peak_sram_per_core: stats.peak_sram_per_core.clone(),
        mesh_bytes: sim.mesh_bytes,
        copy_bytes: sim.copy_bytes,
        host_bytes: sim.host_bytes,
        flops: sim.flops,
        busy_seconds_per_core: busy.into_iter().collect(),
        instructions: program.instrs.len(),
        link_bytes: sim.link_bytes.into_iter().collect(),
        roofline_seconds: roofline.seconds,
        roofline_efficiency: roofline::efficiency(roofline.seconds, sim.makespan),
        roofline_bound: roofline.binding.map(|b| b.name().to_string()),
        roofline,
        ops,
        numerics: Vec::new(),
        timeline: sim.timeline,
    }
}

/// The timing model's pass over the Program (see the module doc).
fn time(program: &Program) -> Sim<'_> {
    let mut sim = Sim::new(program);
    for (pc, instr) in program.instrs.iter().enumerate() {
        sim.step(pc, instr);
    }
    sim
}

/// Instructions the functional pass schedules at a time (see [`Deps`]): a window bounds how
/// far ahead of program order an Alloc can be served, so host memory stays near the
/// Program's own peak.
const WINDOW: usize = 4096;

/// The functional pass over the Program: the host outputs' values, and what the conversions
/// of each scale saw. Instructions run window by window, each window level by level; the
/// tasks of one level (each the level's instructions writing one array, in program order)
/// touch disjoint arrays and run in parallel, shared among the caller and a [`crew`] of
/// helper threads (as many in all as rayon's pool has threads). Every instruction computes
/// the same values whatever runs beside it, so the outputs are bit-identical to running the
/// Program in order, for any thread count. `keep`: the Plan keeps its arrays for the next run (not
/// for a Plan made for this run only).
fn compute(
    program: &Program,
    plan: &Plan,
    keep: bool,
    inputs: &[(&[usize], &[f32])],
    numerics: &Numerics<'_>,
) -> Result<(Vec<Vec<f32>>, Vec<ScaleProfile>), RuntimeError> {
    let mut data = Data::new(program, plan, plan.kept.take(plan.slot_len.len()), inputs, numerics)?;
    let helpers = if plan.parallel.contains(&true) { rayon::current_num_threads().saturating_sub(1) } else { 0 };
    crew::with_crew(helpers, |crew| {
        for (w, &parallel) in plan.ends.windows(2).zip(&plan.parallel) {
            data.run_level(&plan.order[w[0]..w[1]], parallel.then_some(crew))?;
        }
        Ok::<_, RuntimeError>(())
    })?;
    let Data { slots, outputs, scales, .. } = data;
    if keep {
        plan.kept.put(slots);
    }
    Ok((outputs, scales))
}

/// What the functional pass over a Program does apart from the values (the same for every
/// run: a [`ValidProgram`] keeps it): where every array lives, and the order the
/// instructions run in, level by level.
///
/// Arrays live in slots, assigned when the Program is planned: an Alloc takes a free slot of
/// its buffer's size (or a new one), a Free gives it back, and an instruction that gives its
/// output a buffer's values unchanged (a copy of a whole buffer, a reshape:
/// [`shared_source`]) makes its buffer share that buffer's slot until either is written, when
/// the written one moves to a slot of its own with the values copied (copy on write). So a
/// run moves no arrays between buffers, counts no references and keeps no pool: Allocs,
/// Frees and shared copies cost it nothing, and the slots' arrays are kept for the next run
/// (a notebook runs the same graph again and again; paging hundreds of megabytes in anew each
/// time would cost more than the kernels).
#[derive(Clone, Debug)]
pub(crate) struct Plan {
    /// Values of each slot's array.
    slot_len: Vec<usize>,
    /// The instructions that do something at run time, level after level (each in program
    /// order), resolved to slots. (A run reads this in order, and the instructions themselves
    /// only to run them: on a Program of a million instructions the level loop otherwise
    /// waited on fetching each one, three times.)
    order: Vec<Step>,
    /// Where each level starts in `order`, and its end.
    ends: Vec<usize>,
    /// The Loads, Stores and Copies of `order`, resolved ([`BoxCopy`]), in order.
    boxes: Vec<BoxCopy>,
    /// Their merged dims and strides ([`BoxCopy::dims`]).
    box_dims: Vec<usize>,
    /// The Kernels of `order`, resolved ([`KernelRun`]), in order.
    kernels: Vec<KernelRun>,
    /// Their arguments' slots ([`KernelRun::args`]) and their buffers' shapes.
    kernel_args: Vec<(u32, u32, u32)>,
    shapes: Vec<usize>,
    /// Per level, whether its tasks run in parallel: more than one of them does work,
    /// [`PARALLEL_MIN_WORK`] in all.
    parallel: Vec<bool>,
    /// The slots' arrays between runs.
    kept: KeptSlots,
}

/// No slot: a host output's task, a buffer without an array, or no copy on write.
const NO_SLOT: u32 = u32::MAX;

/// The slots of a Plan while it is made: which slot each buffer's values are in, how many
/// buffers share each slot, and the free slots by size.
struct Slots {
    of: Vec<u32>,
    refs: Vec<u32>,
    len: Vec<usize>,
    free: FastMap<usize, Vec<u32>>,
}

impl Slots {
    /// A free slot of `n` values (a new one if none is free), held once.
    fn take(&mut self, n: usize) -> u32 {
        let s = match self.free.get_mut(&n).and_then(Vec::pop) {
            Some(s) => s,
            None => {
                self.len.push(n);
                self.refs.push(0);
                (self.len.len() - 1) as u32
            }
        };
        self.refs[s as usize] = 1;
        s
    }

    /// Drops one hold of slot `s` (none for [`NO_SLOT`]); the last makes it free.
    fn release(&mut self, s: u32) {
        if s == NO_SLOT {
            return;
        }
        let refs = &mut self.refs[s as usize];
        *refs -= 1;
        if *refs == 0 {
            self.free.entry(self.len[s as usize]).or_default().push(s);
        }
    }
}

impl Plan {
    pub(crate) fn new(program: &Program) -> Plan {
        let shared: Vec<Option<BufId>> = program.instrs.iter().map(|i| shared_source(program, i)).collect();
        let mut deps = Deps::new(program);
        let (mut levels, mut level_ends) = (Vec::with_capacity(program.instrs.len()), vec![0]);
        for start in (0..program.instrs.len()).step_by(WINDOW) {
            let end = (start + WINDOW).min(program.instrs.len());
            for level in deps.levels(start..end, &shared) {
                levels.extend(level);
                level_ends.push(levels.len());
            }
        }
        let elems: Vec<usize> = program.buffers.iter().map(|b| numel(&b.shape).unwrap_or(0)).collect();
        let fresh = alloc_contents(program, &shared);
        let mut slots = Slots { of: vec![NO_SLOT; program.buffers.len()], refs: Vec::new(), len: Vec::new(), free: FastMap::default() };
        let (mut boxes, mut box_dims) = (Vec::new(), Vec::new());
        let (mut kernels, mut kernel_args, mut shapes) = (Vec::new(), Vec::new(), Vec::new());
        let (mut order, mut ends, mut parallel) = (Vec::with_capacity(levels.len()), vec![0], Vec::new());
        // A level's writers of one array after the first join the first one's task: the
        // index of that task among the level's tasks.
        let mut task_of = vec![(usize::MAX, 0u32); program.buffers.len() + program.outputs.len()];
        for (l, w) in level_ends.windows(2).enumerate() {
            // Slots left by buffers moving to their own (copy on write) are released after the
            // level: its tasks may still be copying them.
            let mut moved = Vec::new();
            let (mut tasks, mut busy, mut total) = (0u32, 0, 0);
            let start = order.len();
            for &pc in &levels[w[0]..w[1]] {
                let instr = &program.instrs[pc];
                let written = accesses(instr).0;
                let (zero, slot, copy_of) = match (instr, written, shared[pc]) {
                    (Instr::Alloc { buf }, ..) => {
                        if fresh[pc] == Fresh::Nothing {
                            continue;
                        }
                        let s = slots.take(elems[*buf]);
                        slots.of[*buf] = s;
                        if fresh[pc] != Fresh::Zeroed {
                            continue;
                        }
                        (true, s, NO_SLOT)
                    }
                    (Instr::Free { buf }, ..) => {
                        let old = std::mem::replace(&mut slots.of[*buf], NO_SLOT);
                        slots.release(old);
                        continue;
                    }
                    (_, Written::Buf(b), Some(src)) => {
                        let s = slots.of[src];
                        if s != NO_SLOT {
                            slots.refs[s as usize] += 1;
                        }
                        let old = std::mem::replace(&mut slots.of[b], s);
                        slots.release(old);
                        continue;
                    }
                    (_, Written::Output(_), _) => (false, NO_SLOT, NO_SLOT),
                    (_, Written::Buf(b), None) => {
                        let s = slots.of[b];
                        if task_of[b].0 == l || (s != NO_SLOT && slots.refs[s as usize] == 1) {
                            (false, s, NO_SLOT)
                        } else {
                            // Shared with another buffer (or no array yet): its own slot, with
                            // the values if it needs them.
                            let own = slots.take(elems[b]);
                            slots.of[b] = own;
                            moved.push(s);
                            let keeps = s != NO_SLOT && !overwrites_whole(program, instr);
                            (false, own, if keeps { s } else { NO_SLOT })
                        }
                    }
                };
                let how = match instr {
                    _ if zero => How::Zero,
                    Instr::Kernel { op, inputs, output } => {
                        let at = kernel_args.len() as u32;
                        for &b in inputs.iter().chain([output]) {
                            let shape = &program.buffers[b].shape;
                            kernel_args.push((slots.of[b], shapes.len() as u32, shape.len() as u32));
                            shapes.extend_from_slice(shape);
                        }
                        let int_output = program.buffers[*output].dtype.is_int();
                        kernels.push(KernelRun { op: op.clone(), args: (at, inputs.len() as u32), int_output });
                        How::Kernel((kernels.len() - 1) as u32)
                    }
                    _ => match BoxCopy::new(program, instr, &slots.of, &mut box_dims) {
                        Some(b) => {
                            boxes.push(b);
                            How::Copy((boxes.len() - 1) as u32)
                        }
                        None => How::Exec,
                    },
                };
                let k = written.index(program);
                let (joined, task) = if task_of[k].0 == l {
                    (true, task_of[k].1)
                } else {
                    task_of[k] = (l, tasks);
                    tasks += 1;
                    (false, tasks - 1)
                };
                // (A level's writers of one array run as one task: they count once.)
                let work = if zero { slots.len[slot as usize] as u64 } else { work(program, &elems, instr) };
                if work > 0 && !joined {
                    busy += 1;
                }
                total += work;
                // Where on the mesh the array lives (a host output: first).
                let home = match written {
                    Written::Buf(b) => {
                        let c = &program.buffers[b].core;
                        c.row * program.target.cols() + c.col + 1
                    }
                    Written::Output(_) => 0,
                };
                order.push(Step { pc, written, slot, copy_of, how, task, joined, home });
            }
            for s in moved {
                slots.release(s);
            }
            // Each task's steps next to each other, in program order (the sort is stable): a
            // task runs a slice of the level; tasks in mesh order, so a thread's share of a
            // level is a block of cores.
            order[start..].sort_by_key(|s| (s.home, s.task));
            if order.len() > *ends.last().unwrap_or(&0) {
                ends.push(order.len());
                parallel.push(busy > 1 && total >= PARALLEL_MIN_WORK);
            }
        }
        Plan { slot_len: slots.len, order, ends, boxes, box_dims, kernels, kernel_args, shapes, parallel, kept: KeptSlots::default() }
    }
}

/// How the functional pass runs an instruction ([`Step`]).
#[derive(Clone, Copy, Debug, PartialEq)]
enum How {
    /// As the [`BoxCopy`] of this index in [`Plan::boxes`] (a Load, Store or Copy).
    Copy(u32),
    /// As the [`KernelRun`] of this index in [`Plan::kernels`].
    Kernel(u32),
    /// From the instruction itself (a Fill, a HostCopy).
    Exec,
    /// Zeroes the array (an Alloc whose buffer is read before every element is written).
    Zero,
}

/// One instruction the functional pass runs ([`Plan::order`]).
#[derive(Clone, Copy, Debug)]
struct Step {
    pc: usize,
    /// The array it writes: a buffer (in `slot`) or a host output.
    written: Written,
    slot: u32,
    /// The slot whose values the array takes before the instruction runs (copy on write), or
    /// [`NO_SLOT`].
    copy_of: u32,
    how: How,
    /// Its task's number in the level: the level's instructions writing one array run as one
    /// task, in program order ([`Data::run_level`]).
    task: u32,
    /// It joins the task of an earlier instruction of the level (not the task's first).
    joined: bool,
    /// The core whose array it writes, in row-major order after the host outputs: a level's
    /// tasks are in this order, and a crew's threads share them out in runs ([`crew`]).
    home: u32,
}

/// A Kernel resolved when the Program is planned, like a [`BoxCopy`]: its op (a copy, kept
/// in level order), and where its inputs' and output's slots and shapes are.
#[derive(Clone, Debug)]
struct KernelRun {
    op: KernelOp,
    /// Where its arguments start in [`Plan::kernel_args`], and how many inputs it has: each
    /// input, then the output, as the slot and where its buffer's shape starts in
    /// [`Plan::shapes`] and its rank.
    args: (u32, u32),
    /// The output holds integers (checked after it runs).
    int_output: bool,
}

/// A Load, Store or Copy resolved when the Program is planned, so a run reads this (in level
/// order, next to its neighbours) rather than the instruction's regions and its arrays'
/// shapes, which lie scattered over the heap: on the tiny GPT-2's Programs, fetching them was
/// 40 % of a copy's time.
#[derive(Clone, Copy, Debug)]
struct BoxCopy {
    from: Source,
    /// The box's first element in the array it reads and in the one it writes.
    s0: usize,
    d0: usize,
    /// Where the box's merged dims ([`shape::merge_dims`]), then the read array's and the
    /// written array's strides on them, start in [`Plan::box_dims`], and how many dims it has;
    /// `None`: the box is empty.
    dims: Option<(usize, usize)>,
}

/// The array a [`BoxCopy`] reads.
#[derive(Clone, Copy, Debug)]
enum Source {
    /// A host input (a Load); `ints`: the buffer it loads into holds integers, which are
    /// checked.
    Input { input: usize, ints: bool },
    /// A buffer's slot (a Store or Copy); possibly the one it writes.
    Slot(u32),
}

impl BoxCopy {
    /// `instr`'s box copy, its dims and strides appended to `dims` (`slots`: each buffer's
    /// slot); `None` if `instr` is not a Load, Store or Copy.
    fn new(program: &Program, instr: &Instr, slots: &[u32], dims: &mut Vec<usize>) -> Option<BoxCopy> {
        let shape = |b: BufId| program.buffers[b].shape.as_slice();
        let (from, (src_shape, src_region), (dst_shape, dst_region)) = match instr {
            Instr::Load { input, src, buf, dst } => {
                let ints = program.buffers[*buf].dtype.is_int();
                (Source::Input { input: *input, ints }, (program.inputs[*input].shape.as_slice(), src), (shape(*buf), dst))
            }
            Instr::Store { buf, src, output, dst } => (Source::Slot(slots[*buf]), (shape(*buf), src), (program.outputs[*output].shape.as_slice(), dst)),
            Instr::Copy { src, src_region, dst, dst_region } => (Source::Slot(slots[*src]), (shape(*src), src_region), (shape(*dst), dst_region)),
            _ => return None,
        };
        let (mut s_st, d_st) = (shape::strides(src_shape), shape::strides(dst_shape));
        let s0 = src_region.offsets.iter().zip(&s_st).map(|(o, s)| o * s).sum();
        let d0 = dst_region.offsets.iter().zip(&d_st).map(|(o, s)| o * s).sum();
        let mut b = BoxCopy { from, s0, d0, dims: None };
        // A store's source box whose first dim merges the destination box's leading `q` dims:
        // walk the destination box, the source's first dim unflattened (row-major).
        if let Some(q) = shape::merged_lead(&src_region.sizes, &dst_region.sizes).filter(|_| src_region.sizes != dst_region.sizes) {
            let mut lead = shape::strides(&dst_region.sizes[..q]);
            lead.iter_mut().for_each(|x| *x *= s_st[0]);
            s_st = lead.into_iter().chain(s_st[1..].iter().copied()).collect();
        }
        if !dst_region.sizes.contains(&0) {
            let (merged, [ss, ds]) = shape::merge_dims(&dst_region.sizes, [&s_st, &d_st]);
            b.dims = Some((dims.len(), merged.len()));
            dims.extend(merged.iter().chain(&ss).chain(&ds));
        }
        Some(b)
    }
}

/// A Plan's slots' arrays between runs: a run takes them and puts them back. All Plans'
/// kept arrays together stay within [`KEPT_MAX_BYTES`]: a run putting its arrays back lets
/// the least recently kept other Plans' go first (a training step alternates two graphs, a
/// model with graph breaks runs several in turn), as many as needed, all of them for a Plan
/// needing more than that alone; one needing more than [`KEPT_MAX_ONE_BYTES`] keeps none,
/// and a failed run lets its arrays go. (The next run without kept arrays makes them anew.)
#[derive(Default)]
struct KeptSlots(std::sync::Arc<Kept>);

/// The arrays and their bytes.
#[derive(Default)]
struct Kept(std::sync::Mutex<(Vec<Vec<f32>>, usize)>);

/// Every Plan's kept arrays, least recently kept first (dropped Plans' entries are skipped
/// and removed).
static KEPT: std::sync::Mutex<Vec<std::sync::Weak<Kept>>> = std::sync::Mutex::new(Vec::new());
/// Bytes of all Plans' kept arrays.
static KEPT_BYTES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
/// The bound on [`KEPT_BYTES`] when more than one Plan keeps arrays: 2 GiB (resnet18 8x224
/// on d1 keeps about 0.9 GiB).
const KEPT_MAX_BYTES: usize = 2 << 30;
/// The most one Plan keeps: 4 GiB.
const KEPT_MAX_ONE_BYTES: usize = 4 << 30;

impl Kept {
    fn lock(&self) -> std::sync::MutexGuard<'_, (Vec<Vec<f32>>, usize)> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Lets the arrays go.
    fn clear(&self) {
        let (arrays, bytes) = std::mem::take(&mut *self.lock());
        KEPT_BYTES.fetch_sub(bytes, std::sync::atomic::Ordering::Relaxed);
        drop(arrays);
    }
}

impl Drop for Kept {
    fn drop(&mut self) {
        let bytes = self.0.get_mut().map_or_else(|p| p.into_inner().1, |k| k.1);
        KEPT_BYTES.fetch_sub(bytes, std::sync::atomic::Ordering::Relaxed);
    }
}

impl KeptSlots {
    /// The kept arrays (empty ones when none are kept, or a run has them), `n` slots.
    fn take(&self, n: usize) -> Vec<Vec<f32>> {
        let (mut arrays, bytes) = std::mem::take(&mut *self.0.lock());
        KEPT_BYTES.fetch_sub(bytes, std::sync::atomic::Ordering::Relaxed);
        arrays.resize_with(n, Vec::new);
        arrays
    }

    /// Keeps `arrays` for the next run (unless another run has put its own back first).
    fn put(&self, arrays: Vec<Vec<f32>>) {
        use std::sync::atomic::Ordering::Relaxed;
        let bytes: usize = arrays.iter().map(|a| a.capacity() * 4).sum();
        // (Another run of this Plan may have put its arrays back first; the bound is checked
        // without a lock over all Plans, so runs ending together may overshoot it a little.)
        if bytes > KEPT_MAX_ONE_BYTES || !self.0.lock().0.is_empty() {
            return;
        }
        {
            // This Plan becomes the most recently kept; the least recent others go while all
            // would exceed the bound. (No Plan's lock is held while taking the list's.)
            let mut kept = KEPT.lock().unwrap_or_else(|p| p.into_inner());
            let me = std::sync::Arc::downgrade(&self.0);
            kept.retain(|k| k.strong_count() > 0 && !k.ptr_eq(&me));
            while KEPT_BYTES.load(Relaxed) + bytes > KEPT_MAX_BYTES && !kept.is_empty() {
                if let Some(other) = kept.remove(0).upgrade() {
                    other.clear();
                }
            }
            kept.push(me);
        }
        let mut mine = self.0.lock();
        if mine.0.is_empty() {
            KEPT_BYTES.fetch_add(bytes, Relaxed);
            *mine = (arrays, bytes);
        }
    }
}

/// A copy of a Plan keeps no arrays of its own yet.
impl Clone for KeptSlots {
    fn clone(&self) -> KeptSlots {
        KeptSlots::default()
    }
}

impl std::fmt::Debug for KeptSlots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeptSlots")
    }
}

/// Estimated work of a level (see [`work`]) below which it runs on one thread. Levels come
/// quickly one after another, so the crew's helpers are mostly still spinning and cheap to
/// hand work to: on the tiny GPT-2's Programs (levels of tens to hundreds of small
/// instructions) runs with rayon's pool got faster all the way down from 2^16 to 2^8
/// (forward 7.5 -> 6.6 ms, backward 11.5 -> 11.1 ms); with the crew, 2^6 to 2^11 run alike.
/// resnet18's large levels do not notice.
const PARALLEL_MIN_WORK: u64 = 1 << 8;

/// The functional pass's work for `instr`, in values moved or computed: a matmul's
/// multiply-adds, a fused kernel's steps per element, every other instruction's elements
/// written.
fn work(program: &Program, elems: &[usize], instr: &Instr) -> u64 {
    let n = |shape: &[usize]| numel(shape).unwrap_or(0) as u64;
    match instr {
        Instr::Alloc { .. } | Instr::Free { .. } => 0,
        Instr::Load { dst: r, .. } | Instr::Store { src: r, .. } | Instr::Copy { dst_region: r, .. } => n(&r.sizes),
        Instr::Fill { buf, .. } => elems[*buf] as u64,
        Instr::HostCopy { input, .. } => n(&program.inputs[*input].shape),
        Instr::Kernel { op, inputs, output } => {
            let out = elems[*output] as u64;
            match op {
                KernelOp::MatMul { epilogue, .. } => {
                    out * (inputs.first().and_then(|&a| program.buffers[a].shape.last()).copied().unwrap_or(1) + epilogue.len()) as u64
                }
                KernelOp::Fused { steps } => out * steps.len() as u64,
                _ => out,
            }
        }
    }
}

/// An array an instruction writes: a buffer, or a host output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Written {
    Buf(BufId),
    Output(usize),
}

impl Written {
    /// The array's index among all of `program`'s: buffers, then host outputs.
    fn index(self, program: &Program) -> usize {
        match self {
            Written::Buf(b) => b,
            Written::Output(o) => program.buffers.len() + o,
        }
    }
}

/// The array `instr` writes and the buffers it reads (other than the one it writes).
fn accesses(instr: &Instr) -> (Written, &[BufId]) {
    match instr {
        Instr::Alloc { buf } | Instr::Free { buf } | Instr::Fill { buf, .. } | Instr::Load { buf, .. } => {
            (Written::Buf(*buf), &[])
        }
        Instr::Store { buf, output, .. } => (Written::Output(*output), std::slice::from_ref(buf)),
        Instr::HostCopy { output, .. } => (Written::Output(*output), &[]),
        Instr::Copy { src, dst, .. } => (Written::Buf(*dst), std::slice::from_ref(src)),
        Instr::Kernel { inputs, output, .. } => (Written::Buf(*output), inputs.as_slice()),
    }
}

/// Dependency levels of the instructions of a window: an instruction's level is one past
/// the last level that wrote what it reads or read what it writes (RAW, WAR), and at least
/// the level of the last write of what it writes (WAW): one past it, unless both writes
/// run on the array (neither an Alloc, a Free nor a [`shared_source`] step), which may
/// share a level. A level's writers of one array run one after another, in program order,
/// as one task ([`Data::run_level`]); the level's other instructions neither read nor write
/// that array. (A reshard gathers a buffer from many Copies, and host outputs take one
/// Store per shard: in levels of their own they were most of the tiny GPT-2's levels.)
struct Deps<'a> {
    program: &'a Program,
    /// Per array (buffers, then host outputs): the window it was last touched in, and in
    /// that window the level of its last write and of its last read (0: none).
    window: Vec<usize>,
    write: Vec<u32>,
    read: Vec<u32>,
    /// Per array: whether its last write ran on the array (may share its level).
    runs: Vec<bool>,
    windows: usize,
}

impl<'a> Deps<'a> {
    fn new(program: &'a Program) -> Deps<'a> {
        let n = program.buffers.len() + program.outputs.len();
        Deps { program, window: vec![usize::MAX; n], write: vec![0; n], read: vec![0; n], runs: vec![false; n], windows: 0 }
    }

    fn slot(&mut self, w: Written) -> usize {
        let k = w.index(self.program);
        if self.window[k] != self.windows {
            self.window[k] = self.windows;
            self.write[k] = 0;
            self.read[k] = 0;
            self.runs[k] = false;
        }
        k
    }

    /// The instructions `range` by level, each level in program order (`shared`: each
    /// instruction's [`shared_source`]).
    fn levels(&mut self, range: std::ops::Range<usize>, shared: &[Option<BufId>]) -> Vec<Vec<usize>> {
        self.windows += 1;
        let mut levels: Vec<Vec<usize>> = Vec::new();
        for pc in range {
            let instr = &self.program.instrs[pc];
            let (written, reads) = accesses(instr);
            let runs = !matches!(instr, Instr::Alloc { .. } | Instr::Free { .. }) && shared[pc].is_none();
            let reads: Vec<usize> = reads.iter().filter(|&&b| written != Written::Buf(b)).map(|&b| self.slot(Written::Buf(b))).collect();
            let w = self.slot(written);
            let after_write = if runs && self.runs[w] { self.write[w] } else { self.write[w] + 1 };
            let level = reads.iter().map(|&r| self.write[r]).fold(self.read[w], u32::max) + 1;
            let level = level.max(after_write);
            for r in reads {
                self.read[r] = self.read[r].max(level);
            }
            self.write[w] = level;
            self.runs[w] = runs;
            if levels.len() < level as usize {
                levels.resize_with(level as usize, Vec::new);
            }
            levels[level as usize - 1].push(pc);
        }
        levels
    }
}

/// What an instruction reports besides the array it wrote: a Convert's amax and flags.
type Seen = Option<(usize, f32, Flags)>;

/// A directed edge between two chips (or two tiles): (from, to) as grid coordinates.
type EdgeKey = ((u32, u32), (u32, u32));

/// Values of one run: every slot's array ([`Plan`]) and the host outputs.
struct Data<'a> {
    program: &'a Program,
    plan: &'a Plan,
    inputs: &'a [(&'a [usize], &'a [f32])],
    /// One array per slot (empty until first written in a run that did not find it kept, and
    /// while a task writes it).
    slots: Vec<Vec<f32>>,
    outputs: Vec<Vec<f32>>,
    /// The level's tasks (kept between levels for their memory).
    work: Vec<Task<'a>>,
    // numerics: one codec and one record per scale
    codecs: Vec<Codec>,
    scales: Vec<ScaleProfile>,
    calibrate: bool,
    seed: u64,
}

/// What an Alloc gives its buffer, from the instructions touching the buffer after it.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Fresh {
    /// Zeros: an instruction reads the buffer before every element has been written.
    Zeroed,
    /// An array with any contents: every element is written before any is read (by one
    /// instruction overwriting it whole, or by parts that tile it).
    Any,
    /// No array: the first instruction shares another buffer's array ([`shared_source`]).
    /// (Also what every instruction but an Alloc gets.)
    Nothing,
}

/// For every instruction, what it gives its buffer if it is an Alloc ([`Fresh`]); `shared`:
/// each instruction's [`shared_source`].
fn alloc_contents(program: &Program, shared: &[Option<BufId>]) -> Vec<Fresh> {
    /// An Alloc whose buffer has not been read yet, and the parts of it written so far.
    struct Pending<'p> {
        alloc: usize,
        parts: Vec<&'p Region>,
        elems: usize,
    }
    let mut fresh = vec![Fresh::Nothing; program.instrs.len()];
    let mut pending: Vec<Option<Pending<'_>>> = (0..program.buffers.len()).map(|_| None).collect();
    // Settles what the pending Alloc of `b` gives: `if_untouched` when nothing was written
    // to the buffer yet, else an array with any contents (`Any`) or zeros (`Zeroed`).
    let settle = |fresh: &mut [Fresh], pending: &mut [Option<Pending<'_>>], b: BufId, if_untouched: Fresh, if_written: Fresh| {
        if let Some(p) = pending[b].take() {
            fresh[p.alloc] = if p.parts.is_empty() { if_untouched } else { if_written };
        }
    };
    for (pc, instr) in program.instrs.iter().enumerate() {
        let (written, reads) = accesses(instr);
        if let Instr::Alloc { buf } = instr {
            fresh[pc] = Fresh::Zeroed;
            pending[*buf] = Some(Pending { alloc: pc, parts: Vec::new(), elems: 0 });
            continue;
        }
        for &b in reads {
            settle(&mut fresh, &mut pending, b, Fresh::Zeroed, Fresh::Zeroed);
        }
        let Written::Buf(b) = written else { continue };
        if matches!(instr, Instr::Free { .. }) || shared[pc].is_some() {
            // Freed, or replaced by another buffer's array: its own contents never show.
            settle(&mut fresh, &mut pending, b, Fresh::Nothing, Fresh::Any);
        } else if overwrites_whole(program, instr) {
            settle(&mut fresh, &mut pending, b, Fresh::Any, Fresh::Any);
        } else if let (Instr::Load { dst: part, .. } | Instr::Copy { dst_region: part, .. }, Some(p)) = (instr, pending[b].as_mut()) {
            // A part written: once the parts tile the buffer, its first contents never show.
            p.parts.push(part);
            p.elems += part.sizes.iter().product::<usize>();
            let shape = &program.buffers[b].shape;
            if p.elems == shape.iter().product::<usize>() && disjoint(&p.parts) {
                settle(&mut fresh, &mut pending, b, Fresh::Any, Fresh::Any);
            }
        } else {
            settle(&mut fresh, &mut pending, b, Fresh::Zeroed, Fresh::Zeroed);
        }
    }
    fresh
}

/// Whether no two of the boxes overlap (at most [`MAX_PARTS`] of them are compared: more
/// count as overlapping, and the buffer is zeroed).
fn disjoint(parts: &[&Region]) -> bool {
    const MAX_PARTS: usize = 1024;
    let apart = |a: &Region, b: &Region| {
        (0..a.sizes.len()).any(|d| a.offsets[d] + a.sizes[d] <= b.offsets[d] || b.offsets[d] + b.sizes[d] <= a.offsets[d])
    };
    parts.len() <= MAX_PARTS && parts.iter().enumerate().all(|(i, a)| parts[..i].iter().all(|b| apart(a, b)))
}

/// Whether `instr` writes every element of the buffer it writes without reading it first.
fn overwrites_whole(program: &Program, instr: &Instr) -> bool {
    let whole = |r: &Region, b: BufId| r.offsets.iter().all(|&o| o == 0) && r.sizes == program.buffers[b].shape;
    match instr {
        Instr::Load { buf, dst, .. } => whole(dst, *buf),
        Instr::Copy { src, dst, dst_region, .. } => src != dst && whole(dst_region, *dst),
        Instr::Fill { .. } => true,
        Instr::Kernel { op, inputs, output } => kernels::overwrites_output(op) && !inputs.contains(output),
        Instr::Alloc { .. } | Instr::Free { .. } | Instr::Store { .. } | Instr::HostCopy { .. } => false,
    }
}

/// The buffer whose values `instr` gives its output unchanged, if any: a Copy of a whole
/// buffer into a whole other buffer, or a Reshape. The functional pass shares that buffer's
/// array instead of copying it.
fn shared_source(program: &Program, instr: &Instr) -> Option<BufId> {
    match instr {
        Instr::Copy { src, src_region, dst, dst_region }
            if src != dst && src_region.sizes == program.buffers[*src].shape && dst_region.sizes == program.buffers[*dst].shape =>
        {
            Some(*src)
        }
        Instr::Kernel { op: KernelOp::Reshape, inputs, .. } => inputs.first().copied(),
        _ => None,
    }
}

/// Timing state for one run.
struct Sim<'a> {
    program: &'a Program,
    /// Elements of each buffer.
    elems: Vec<usize>,
    // timing: busy-until per resource (only resources in use have an entry)
    core_free: FastMap<CoreId, f64>,
    dma_free: FastMap<CoreId, Lane>,
    eject_free: FastMap<CoreId, Lane>,
    link_free: FastMap<Link, Lane>,
    chip_edge_free: FastMap<EdgeKey, Lane>,
    tile_edge_free: FastMap<EdgeKey, Lane>,
    dips: Vec<Lane>,
    ready: Vec<f64>,
    written: Vec<f64>,
    read_done: Vec<f64>,
    busy: BTreeMap<CoreId, f64>,
    makespan: f64,
    // traffic
    link_bytes: BTreeMap<Link, u64>,
    mesh_bytes: u64,
    copy_bytes: u64,
    host_bytes: u64,
    flops: u64,
    timeline: Vec<TimelineEvent>,
    // roofline tallies: the whole Program and each op of its provenance
    total: Tally,
    per_op: Vec<Tally>,
}

/// A zeroed `f32` vector, as an error rather than an abort if memory runs out.
fn zeros(n: usize, what: &str) -> Result<Vec<f32>, RuntimeError> {
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|_| alloc_failed(what, n))?;
    v.resize(n, 0.0);
    Ok(v)
}

fn alloc_failed(what: &str, n: usize) -> RuntimeError {
    RuntimeError::new(format!("cannot allocate host memory for {what} ({n} elements)"))
}

/// Copies a box ([`BoxCopy`]) starting at `s0` in `src` and at `d0` in `dst`, of merged
/// `dims` with strides `ss` in `src` and `ds` in `dst`: row by row, a row being one `memcpy`
/// when its elements are adjacent in both arrays, else a strided loop.
fn copy_rows(src: &[f32], s0: usize, dst: &mut [f32], d0: usize, dims: &[usize], [ss, ds]: [&[usize]; 2]) -> Result<(), RuntimeError> {
    let outside = || RuntimeError::new("internal error: a region run falls outside its array after validation");
    // Most boxes are one run of contiguous values, or rows (or planes of rows) of them at
    // fixed steps (a shard, a convolution's taps and halos): plain loops, no odometer.
    let rows = match (dims, ss, ds) {
        (&[len], [1], [1]) => Some(([1, 1, len], [0, 0], [0, 0])),
        (&[rows, len], &[sr, 1], &[dr, 1]) => Some(([1, rows, len], [0, sr], [0, dr])),
        (&[planes, rows, len], &[sp, sr, 1], &[dp, dr, 1]) => Some(([planes, rows, len], [sp, sr], [dp, dr])),
        _ => None,
    };
    if let Some(([planes, rows, len], [sp, sr], [dp, dr])) = rows {
        let (s_end, d_end) = (s0 + (planes - 1) * sp + (rows - 1) * sr + len, d0 + (planes - 1) * dp + (rows - 1) * dr + len);
        if s_end > src.len() || d_end > dst.len() {
            return Err(outside());
        }
        for p in 0..planes {
            for r in 0..rows {
                let (s, d) = (s0 + p * sp + r * sr, d0 + p * dp + r * dr);
                shape::copy_row(&mut dst[d..d + len], &src[s..s + len]);
            }
        }
        return Ok(());
    }
    let mut inside = true;
    shape::for_each_row(dims, [ss, ds], |[s, d], len, [sk, dk]| {
        let (s, d) = (s0 + s, d0 + d);
        match (src.get(s..s + (len - 1) * sk + 1), dst.get_mut(d..d + (len - 1) * dk + 1)) {
            // (A rank-0 walk is one element with step 0.)
            (Some(from), Some(to)) if len == 1 || (sk == 1 && dk == 1) => shape::copy_row(to, from),
            (Some(from), Some(to)) => {
                for (t, f) in to.iter_mut().step_by(dk).zip(from.iter().step_by(sk)) {
                    *t = *f;
                }
            }
            _ => inside = false,
        }
    });
    if inside {
        Ok(())
    } else {
        Err(outside())
    }
}

fn max_of(times: impl IntoIterator<Item = f64>) -> f64 {
    times.into_iter().fold(0.0, f64::max)
}

/// A hash map with a cheap multiplicative hasher (FxHash's): the timing maps are looked up
/// several times per instruction and never iterated, so neither DoS resistance nor order
/// matters.
type FastMap<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<FxHasher>>;

#[derive(Default)]
struct FxHasher(u64);

impl std::hash::Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }
    fn write_u32(&mut self, x: u32) {
        self.write_u64(u64::from(x));
    }
    fn write_u64(&mut self, x: u64) {
        self.0 = (self.0.rotate_left(5) ^ x).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn write_usize(&mut self, x: usize) {
        self.write_u64(x as u64);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// Reserves `key`'s lane in `map` for `duration` from `start` (a time it is free then).
fn take<K: std::hash::Hash + Eq>(map: &mut FastMap<K, Lane>, key: K, start: f64, duration: f64) {
    let lane = map.entry(key).or_default();
    let (_, gap) = lane.slot(start, duration);
    lane.reserve(start, duration, gap, LANE_GAPS);
}

impl<'a> Data<'a> {
    fn new(
        program: &'a Program,
        plan: &'a Plan,
        slots: Vec<Vec<f32>>,
        inputs: &'a [(&'a [usize], &'a [f32])],
        numerics: &Numerics<'_>,
    ) -> Result<Data<'a>, RuntimeError> {
        if let Some(b) = numerics.biases.filter(|b| b.len() != program.scales.len()) {
            return Err(RuntimeError::new(format!(
                "{} scale bias(es) given for a Program with {} scale(s)",
                b.len(),
                program.scales.len()
            )));
        }
        let mut codecs = Vec::new();
        let mut scales = Vec::new();
        for (k, sc) in program.scales.iter().enumerate() {
            let bias = numerics.biases.map_or(sc.bias, |b| b[k]);
            let format = sc.dtype.storage_format().unwrap_or(Format::Fp32);
            let codec = Codec::new(format, bias).map_err(|e| e.context(format!("scale {k} ({})", sc.name)))?;
            codecs.push(codec);
            scales.push(ScaleProfile { name: sc.name.clone(), dtype: sc.dtype, bias, amax: 0.0, flags: Flags::default() });
        }
        let mut outputs = Vec::with_capacity(program.outputs.len());
        for (i, decl) in program.outputs.iter().enumerate() {
            outputs.push(zeros(numel(&decl.shape).unwrap_or(0), &format!("output {i}"))?);
        }
        Ok(Data {
            program,
            plan,
            inputs,
            slots,
            outputs,
            work: Vec::new(),
            codecs,
            scales,
            calibrate: numerics.calibrate,
            seed: numerics.seed,
        })
    }

    /// Runs the instructions of one level (independent of each other, but for writers of one
    /// array, see [`Deps`]) as one task per array written, on that array, taken out
    /// meanwhile; the tasks in parallel when there is enough work.
    fn run_level(&mut self, level: &'a [Step], crew: Option<&Crew>) -> Result<(), RuntimeError> {
        let mut work = std::mem::take(&mut self.work);
        // A task's steps lie next to each other, its first one not joined ([`Plan::new`]).
        let mut at = 0;
        while at < level.len() {
            let step = &level[at];
            let n = 1 + level[at + 1..].iter().take_while(|s| s.joined).count();
            let array = match step.written {
                Written::Output(o) => std::mem::take(&mut self.outputs[o]),
                Written::Buf(_) => std::mem::take(&mut self.slots[step.slot as usize]),
            };
            work.push(Task { steps: &level[at..at + n], array, seen: Vec::new(), failed: None });
            at += n;
        }
        let ctx = Ctx { program: self.program, inputs: self.inputs, slots: &self.slots, codecs: &self.codecs, calibrate: self.calibrate, seed: self.seed };
        let plan = self.plan;
        let run = |task: &mut Task| {
            if let Err(e) = task.run(&ctx, plan) {
                task.failed = Some(Box::new(e));
            }
        };
        if let Some(crew) = crew {
            crew.for_each_mut(&mut work, run);
        } else {
            work.iter_mut().for_each(run);
        }
        // The first failing instruction of the level in program order is the one reported.
        if let Some((_, e)) = work.iter_mut().filter_map(|t| t.failed.take()).map(|f| *f).min_by_key(|(pc, _)| *pc) {
            return Err(e);
        }
        for task in work.drain(..) {
            for (k, amax, flags) in task.seen {
                let rec = &mut self.scales[k];
                rec.amax = rec.amax.max(amax);
                rec.flags += flags;
            }
            let step = &task.steps[0];
            match step.written {
                Written::Buf(_) => self.slots[step.slot as usize] = task.array,
                Written::Output(o) => self.outputs[o] = task.array,
            }
        }
        self.work = work;
        Ok(())
    }
}

/// What one level does to one array ([`Data::run_level`]): the instructions writing it, in
/// program order, after the values it takes from another slot if any (copy on write).
struct Task<'a> {
    /// Its instructions: the first says which array, and what it needs first.
    steps: &'a [Step],
    array: Vec<f32>,
    /// What its Converts saw.
    seen: Vec<(usize, f32, Flags)>,
    /// The instruction that failed, and why.
    failed: Option<Box<(usize, RuntimeError)>>,
}

impl Task<'_> {
    /// Readies the array, then runs the instructions writing it; on failure, the failing
    /// instruction and why.
    fn run(&mut self, ctx: &Ctx<'_>, plan: &Plan) -> Result<(), (usize, RuntimeError)> {
        let prog = ctx.program;
        let Task { steps, array, seen, .. } = self;
        let (mut runs, Step { pc: first, written, slot, copy_of, .. }) = (&steps[..], steps[0]);
        if let Written::Buf(b) = written {
            // A slot's array is made at its first write of a run that found none kept (zeros,
            // which a first instruction zeroing it need not write again).
            let n = plan.slot_len[slot as usize];
            if array.len() != n {
                *array = zeros(n, &format!("buffer {b}")).map_err(|e| (first, e))?;
                if runs[0].how == How::Zero {
                    runs = &runs[1..];
                }
            }
        }
        if copy_of != NO_SLOT {
            let from = ctx.slot(copy_of);
            if from.len() != array.len() {
                return Err((first, RuntimeError::new("internal error: a copy on write found its source array unwritten")));
            }
            array.copy_from_slice(from);
        }
        for &Step { pc, how, .. } in runs {
            let instr = &prog.instrs[pc];
            let saw = match how {
                How::Copy(k) => ctx.copy(&plan.boxes[k as usize], &plan.box_dims, slot, array),
                How::Kernel(k) => ctx.kernel(&plan.kernels[k as usize], plan, slot, array),
                How::Exec => ctx.exec(instr, array),
                How::Zero => {
                    array.fill(0.0);
                    Ok(None)
                }
            }
            .map_err(|e| (pc, e.context(format!("instruction {pc} ({})", instr.name()))))?;
            seen.extend(saw);
        }
        Ok(())
    }
}

/// What every instruction of a level reads: the Program, the host inputs, the slots that no
/// instruction of the level writes, and the numerics.
struct Ctx<'a> {
    program: &'a Program,
    inputs: &'a [(&'a [usize], &'a [f32])],
    slots: &'a [Vec<f32>],
    codecs: &'a [Codec],
    calibrate: bool,
    seed: u64,
}

impl Ctx<'_> {
    /// The values in slot `s` (none for [`NO_SLOT`]).
    fn slot(&self, s: u32) -> &[f32] {
        self.slots.get(s as usize).map_or(&[], Vec::as_slice)
    }

    /// Runs the kernel `k` of `plan`, writing `out`, the array of slot `slot`, with its
    /// current contents.
    fn kernel(&self, k: &KernelRun, plan: &Plan, slot: u32, out: &mut Vec<f32>) -> Result<Seen, RuntimeError> {
        let (at, n) = (k.args.0 as usize, k.args.1 as usize);
        let args = &plan.kernel_args[at..at + n + 1];
        let shape = |&(_, s, r): &(u32, u32, u32)| &plan.shapes[s as usize..(s + r) as usize];
        let op = &k.op;
        // An input that is the output itself reads its old contents.
        let old = args[..n].iter().any(|a| a.0 == slot && slot != NO_SLOT).then(|| out.clone());
        let arrays: smallvec::SmallVec<[kernels::Array<'_>; 4]> = args[..n]
            .iter()
            .map(|a| {
                let data = if a.0 == slot && slot != NO_SLOT { old.as_deref().unwrap_or(&[]) } else { self.slot(a.0) };
                (shape(a), data)
            })
            .collect();
        kernels::check_kernel_data(op, &arrays)?;
        let out_shape = shape(&args[n]);
        kernels::run_into(op, &arrays, out_shape, out);
        match op {
            // Rounds the Convert's output (holding its input) to the scale's format,
            // counting the flags and the amax (a calibration run only records the amax).
            KernelOp::Convert { scale } => {
                let amax = cfloat::amax(out);
                let flags = if self.calibrate { Flags::default() } else { self.codecs[*scale].quantize_slice(out, Rounding::NearestEven) };
                return Ok(Some((*scale, amax, flags)));
            }
            KernelOp::Random { stream, offsets, shape } => {
                kernels::random_into(self.seed, *stream, offsets, shape, out_shape, out);
            }
            _ => {}
        }
        if k.int_output {
            kernels::check_exact_ints(out, &op.name())?;
        }
        Ok(None)
    }

    /// Runs the box copy `b` (`dims`: [`Plan::box_dims`]), writing `out`, the array of slot
    /// `slot` (or a host output's), with its current contents.
    fn copy(&self, b: &BoxCopy, dims: &[usize], slot: u32, out: &mut Vec<f32>) -> Result<Seen, RuntimeError> {
        let Some((at, rank)) = b.dims else { return Ok(None) };
        let (sizes, strides) = dims[at..at + 3 * rank].split_at(rank);
        let (ss, ds) = strides.split_at(rank);
        match b.from {
            Source::Input { input, ints } => {
                copy_rows(self.inputs[input].1, b.s0, out, b.d0, sizes, [ss, ds])?;
                if ints {
                    // The values loaded: the rest of the array may still hold what its slot
                    // held before (it is written by other Loads before it is read).
                    let (what, mut checked) = (format!("input {input}"), Ok(()));
                    shape::for_each_row(sizes, [ds], |[d], len, [dk]| {
                        if checked.is_ok() {
                            let row = out.iter().skip(b.d0 + d).step_by(dk.max(1)).take(len).copied();
                            checked = kernels::check_exact_ints_in(row, &what);
                        }
                    });
                    checked?;
                }
            }
            Source::Slot(src) if src == slot && slot != NO_SLOT => {
                // A copy within one array reads the values from before it.
                let from = out.clone();
                copy_rows(&from, b.s0, out, b.d0, sizes, [ss, ds])?;
            }
            Source::Slot(src) => copy_rows(self.slot(src), b.s0, out, b.d0, sizes, [ss, ds])?,
        }
        Ok(None)
    }

    /// Runs `instr` (a Fill or a HostCopy: Allocs and Frees are settled by the Plan), writing
    /// `out`: the array of the buffer or host output it writes, with its current contents.
    fn exec(&self, instr: &Instr, out: &mut Vec<f32>) -> Result<Seen, RuntimeError> {
        let prog = self.program;
        match instr {
            Instr::HostCopy { input, .. } => {
                if prog.inputs[*input].dtype.is_int() {
                    kernels::check_exact_ints(self.inputs[*input].1, &format!("input {input}"))?;
                }
                out.clear();
                out.extend_from_slice(self.inputs[*input].1);
            }
            Instr::Fill { buf, value } => {
                out.fill(*value);
                if prog.buffers[*buf].dtype.is_int() {
                    kernels::check_exact_ints(out, "the filled value")?;
                }
            }
            Instr::Alloc { .. } | Instr::Free { .. } | Instr::Load { .. } | Instr::Store { .. } | Instr::Copy { .. } | Instr::Kernel { .. } => {
                return Err(RuntimeError::new(format!("internal error: {} ran without its plan", instr.name())));
            }
        }
        Ok(None)
    }
}

impl<'a> Sim<'a> {
    fn new(program: &'a Program) -> Sim<'a> {
        let nb = program.buffers.len();
        Sim {
            program,
            elems: program
                .buffers
                .iter()
                .map(|b| numel(&b.shape).unwrap_or(0))
                .collect(),
            core_free: FastMap::default(),
            dma_free: FastMap::default(),
            eject_free: FastMap::default(),
            link_free: FastMap::default(),
            chip_edge_free: FastMap::default(),
            tile_edge_free: FastMap::default(),
            dips: vec![Lane::default(); program.target.dips as usize],
            ready: vec![0.0; nb],
            written: vec![0.0; nb],
            read_done: vec![0.0; nb],
            busy: BTreeMap::new(),
            makespan: 0.0,
            link_bytes: BTreeMap::new(),
            mesh_bytes: 0,
            copy_bytes: 0,
            host_bytes: 0,
            flops: 0,
            timeline: Vec::new(),
            total: Tally::default(),
            per_op: vec![Tally::default(); program.op_names.len()],
        }
    }

    fn bytes(&self, buf: BufId, elements: usize) -> u64 {
        elements as u64 * self.program.buffers[buf].dtype.size_bytes()
    }

    /// The op instruction `pc` belongs to, if any.
    fn op_of(&self, pc: usize) -> Option<u32> {
        self.program.instr_op.get(pc).copied().flatten()
    }

    /// Applies `f` to the Program's tally and to the tally of `pc`'s op.
    fn tally(&mut self, pc: usize, f: impl Fn(&mut Tally)) {
        f(&mut self.total);
        if let Some(op) = self.op_of(pc) {
            f(&mut self.per_op[op as usize]);
        }
    }

    fn record(&mut self, instr: usize, name: String, unit: Unit, start_s: f64, end_s: f64) {
        self.makespan = self.makespan.max(end_s);
        let op = self.op_of(instr);
        self.timeline.push(TimelineEvent {
            instr,
            name,
            unit,
            start_s,
            end_s,
            op,
        });
    }

    /// Occupies core `c`'s pipeline from `earliest` for `max(compute_s, sram_s)`; returns
    /// the end time.
    #[allow(clippy::too_many_arguments)]
    fn on_core(
        &mut self,
        pc: usize,
        name: String,
        c: &CoreId,
        earliest: f64,
        flops: u64,
        compute_s: f64,
        sram_s: f64,
    ) -> f64 {
        let duration = compute_s.max(sram_s);
        let start = earliest.max(self.core_free.get(c).copied().unwrap_or(0.0));
        let end = start + duration;
        self.core_free.insert(c.clone(), end);
        *self.busy.entry(c.clone()).or_insert(0.0) += duration;
        self.record(pc, name, Unit::Core(c.clone()), start, end);
        self.tally(pc, |t| t.core_op(c, flops, compute_s, sram_s, start, end));
        end
    }

    /// Occupies a DIP channel for `bytes` from the earliest time at or after `earliest` that
    /// one is free for the whole transfer (the lowest channel on ties); returns the time the
    /// data has arrived. A channel serves transfers as they become ready, not in program
    /// order: a store reserved for when its data is computed does not hold up a load that is
    /// ready now and fits before it.
    fn on_dip(&mut self, pc: usize, name: &str, earliest: f64, bytes: u64) -> f64 {
        let t = &self.program.target;
        let duration = bytes as f64 / t.dip_hbm_bytes_per_s;
        let (k, (start, gap)) = self
            .dips
            .iter()
            .map(|c| c.slot(earliest, duration))
            .enumerate()
            .fold((0, (f64::INFINITY, None)), |best, (k, s)| if s.0 < best.1 .0 { (k, s) } else { best });
        let busy_until = start + duration;
        let latency = t.host_latency_s;
        let end = busy_until + latency;
        self.dips[k].reserve(start, duration, gap, DIP_GAPS);
        self.host_bytes += bytes;
        self.record(pc, name.to_string(), Unit::Dip(k as u32), start, end);
        self.tally(pc, |tl| tl.host(bytes, latency, start, end));
        end
    }

    /// A core-to-core transfer of `bytes` from `src` to `dst` (different cores), no earlier
    /// than `earliest`: reserves the ports, links and edges of the XY route (see the module
    /// doc). Returns (start, end of serialisation, arrival).
    fn transfer(
        &mut self,
        pc: usize,
        src: &CoreId,
        dst: &CoreId,
        earliest: f64,
        bytes: u64,
    ) -> (f64, f64, f64) {
        let t = &self.program.target;
        let route = t.route(src, dst);
        let mut chip_edges: Vec<EdgeKey> = Vec::new();
        let mut tile_edges: Vec<EdgeKey> = Vec::new();
        let crosses_chips = t.chip_crossings(src, dst) > 0;
        for l in route.iter().filter(|_| crosses_chips) {
            let (cf, ct) = (t.chip_of(&l.from), t.chip_of(&l.to));
            if cf != ct {
                chip_edges.push((cf, ct));
                let (tf, tt) = (t.tile_of(&l.from), t.tile_of(&l.to));
                if tf != tt {
                    tile_edges.push((tf, tt));
                }
            }
        }
        let b = bytes as f64;
        let link_s = b / link_bytes_per_s(t);
        let chip_s = b / t.chip_edge_bytes_per_s;
        let tile_s = b / t.tile_edge_bytes_per_s;
        let mut serial = link_s;
        if !chip_edges.is_empty() {
            serial = serial.max(chip_s);
        }
        if !tile_edges.is_empty() {
            serial = serial.max(tile_s);
        }
        // The earliest time every resource is free for its share of the transfer (a
        // resource's idle gap before a later reservation counts: see `Lane`); after
        // `LANE_ROUNDS` rounds without one, after every resource's last reservation.
        let lanes: Vec<(&Lane, f64)> = [self.dma_free.get(src), self.eject_free.get(dst)]
            .into_iter()
            .flatten()
            .map(|l| (l, serial))
            .chain(route.iter().filter_map(|l| self.link_free.get(l)).map(|l| (l, serial)))
            .chain(chip_edges.iter().filter_map(|e| self.chip_edge_free.get(e)).map(|l| (l, chip_s)))
            .chain(tile_edges.iter().filter_map(|e| self.tile_edge_free.get(e)).map(|l| (l, tile_s)))
            .collect();
        let mut start = earliest;
        for round in 0..=LANE_ROUNDS {
            let s = lanes.iter().fold(start, |s, &(l, d)| s.max(if round < LANE_ROUNDS { l.slot(start, d).0 } else { l.tail }));
            if s == start {
                break;
            }
            start = s;
        }
        let done = start + serial;
        take(&mut self.dma_free, src.clone(), start, serial);
        take(&mut self.eject_free, dst.clone(), start, serial);
        for e in chip_edges {
            take(&mut self.chip_edge_free, e, start, chip_s);
        }
        for e in tile_edges {
            take(&mut self.tile_edge_free, e, start, tile_s);
        }
        let hops = route.len() as u32;
        let latency = (t.injection_latency_cycles + f64::from(hops) * t.hop_latency_cycles)
            / t.clock_hz
            + f64::from(t.chip_crossings(src, dst)) * t.chip_edge_latency_s
            + f64::from(t.tile_crossings(src, dst)) * t.tile_edge_latency_s;
        let end = done + latency;
        for link in route {
            *self.link_bytes.entry(link.clone()).or_insert(0) += bytes;
            take(&mut self.link_free, link.clone(), start, serial);
        }
        self.mesh_bytes += bytes * u64::from(hops);
        self.copy_bytes += bytes;
        self.record(pc, "Copy".to_string(), Unit::Dma(src.clone()), start, end);
        let target = &self.program.target;
        self.tally(pc, |tl| {
            tl.transfer(target, src, dst, bytes, latency, start, end)
        });
        (start, done, end)
    }

    fn step(&mut self, pc: usize, instr: &Instr) {
        let prog = self.program;
        let t = &prog.target;
        match instr {
            Instr::Alloc { .. } | Instr::Free { .. } | Instr::HostCopy { .. } => {}
            Instr::Load { buf, dst, .. } => {
                let bytes = self.bytes(*buf, dst.elements());
                let end = self.on_dip(pc, "Load", self.read_done[*buf], bytes);
                self.ready[*buf] = self.ready[*buf].max(end);
            }
            Instr::Store { buf, src, .. } => {
                let bytes = self.bytes(*buf, src.elements());
                let end = self.on_dip(pc, "Store", self.ready[*buf], bytes);
                self.read_done[*buf] = self.read_done[*buf].max(end);
            }
            Instr::Copy { src, src_region, dst, .. } => {
                let (s, d) = (&prog.buffers[*src], &prog.buffers[*dst]);
                let bytes = self.bytes(*src, src_region.elements());
                let earliest = self.ready[*src]
                    .max(self.read_done[*dst])
                    .max(self.written[*dst]);
                if s.core == d.core {
                    let sram = bytes as f64 / t.sram_load_bytes_per_s
                        + bytes as f64 / t.sram_store_bytes_per_s;
                    let end = self.on_core(pc, "Copy".to_string(), &s.core, earliest, 0, 0.0, sram);
                    self.ready[*dst] = self.ready[*dst].max(end);
                    self.read_done[*src] = self.read_done[*src].max(end);
                } else {
                    let (_, done, end) = self.transfer(pc, &s.core, &d.core, earliest, bytes);
                    self.ready[*dst] = self.ready[*dst].max(end);
                    self.read_done[*src] = self.read_done[*src].max(done);
                }
            }
            Instr::Fill { buf, .. } => {
                let decl = &prog.buffers[*buf];
                let bytes = self.bytes(*buf, self.elems[*buf]);
                let earliest = self.ready[*buf].max(self.read_done[*buf]);
                let sram = bytes as f64 / t.sram_store_bytes_per_s;
                let end = self.on_core(pc, "Fill".to_string(), &decl.core, earliest, 0, 0.0, sram);
                self.ready[*buf] = end;
                self.written[*buf] = end;
            }
            Instr::Kernel { op, inputs, output } => {
                let out_decl = &prog.buffers[*output];
                let in_shapes: Vec<&[usize]> = inputs
                    .iter()
                    .map(|&b| prog.buffers[b].shape.as_slice())
                    .collect();

                let flops = kernels::flops(op, &in_shapes, &out_decl.shape);
                let mut read: u64 = inputs.iter().map(|&b| self.bytes(b, self.elems[b])).sum();
                let written = self.bytes(*output, self.elems[*output]);
                if matches!(op, crate::KernelOp::MatMul { accumulate: true, .. }) {
                    read += written;
                }
                let in_dtypes: Vec<DType> = inputs.iter().map(|&b| prog.buffers[b].dtype).collect();
                // A matmul's epilogue computes on the SIMD unit (FP32 rate) after the products.
                let epilogue = match op {
                    crate::KernelOp::MatMul { epilogue, .. } => kernels::fused_flops(epilogue, self.elems[*output] as u64),
                    _ => 0,
                };
                let compute = (flops - epilogue) as f64 / core_flops_per_s(t, op, &in_dtypes)
                    + epilogue as f64 / (t.fp32_flops_per_cycle * t.clock_hz);
                let memory = read as f64 / t.sram_load_bytes_per_s
                    + written as f64 / t.sram_store_bytes_per_s;
                let earliest = max_of(inputs.iter().map(|&b| self.ready[b]))
                    .max(self.ready[*output])
                    .max(self.read_done[*output]);
                let core = out_decl.core.clone();
                let end = self.on_core(pc, op.name(), &core, earliest, flops, compute, memory);
                self.ready[*output] = end;
                self.written[*output] = end;
                for &b in inputs {
                    self.read_done[b] = self.read_done[b].max(end);
                }
                self.flops += flops;
            }
        }
    }
}

/// Most idle gaps a DIP channel remembers (the latest ones): a transfer that is ready early
/// may run in one of them. resnet50 b32 training forward on tile (2.85 GB of saved
/// activations stored): 2.303 ms with 64 gaps, 1.684 ms with 256, 1.674 ms with 1024. A
/// layer's saved activations are thousands of small stores (one per shard), each leaving a
/// gap: with 256 the gaps before them were forgotten within a layer, and the next layer's
/// weight loads, ready long before, queued behind the last store. GPT-2 124M b8 s512
/// training forward on tile: 3.725 ms with 256, 3.560 ms with 1024 and with 8192 (GPT-2 with
/// 1000 words, seq 128: 1.171, 0.858, 0.857 ms; 65536 gaps: 0.857).
const DIP_GAPS: usize = 4096;
/// Most idle gaps a NoC resource (a core's DMA or ejection port, a link, a chip or tile
/// edge) remembers. Too few serialise copies falsely: a copy whose route finds no common
/// remembered gap starts after every reservation of its resources, and its readers wait in
/// program order behind it. GPT-2 (1000 words, seq 128) backward on tile: 6.790 ms with 8
/// gaps and 4 rounds, 3.044 ms with 128 and 16, 2.832 ms with 1024 and 16 (timed in
/// 15.8, 25.6 and 38.3 s). Later (other plans), with 16 rounds: 2.405 ms with 256 gaps,
/// 2.300 with 1024, 2.262 with 4096, 2.272 with 16384 (simulated in 41.6, 54.8, 55.9 and
/// 57.1 s); GPT-2 124M b8 s512 training on tile (4096 DIP gaps): forward 3.560 ms with 256,
/// 3.329 ms with 4096; backward 7.360 ms (256 DIP and NoC gaps) and 7.155 ms (4096 each).
const LANE_GAPS: usize = 4096;
/// Rounds a transfer looks for a time all the resources of its route are free in their gaps
/// before it starts after all of their reservations (16 against 64: the same time above;
/// with 4096 gaps, GPT-2 (1000 words, seq 128) backward: 2.262 ms against 2.244, simulated
/// in 55.9 and 61.3 s).
const LANE_ROUNDS: usize = 16;

/// One exclusive resource's timeline (a DIP channel; a core's ports, a link, an edge): busy
/// up to `tail`, except for the remembered idle `gaps` before it (by start), left when a
/// transfer was reserved for later than the resource freed (a store waiting for its data; a
/// copy waiting for another link of its route).
#[derive(Clone, Debug, Default)]
struct Lane {
    tail: f64,
    gaps: Vec<(f64, f64)>,
}

impl Lane {
    /// The earliest start at or after `earliest` for a `duration`-long transfer, and the gap
    /// it runs in (None: after the tail).
    fn slot(&self, earliest: f64, duration: f64) -> (f64, Option<usize>) {
        // Gaps are disjoint and sorted, so by end too: skip those ending too early.
        let first = self.gaps.partition_point(|&(_, e)| e < earliest + duration);
        for (i, &(s, e)) in self.gaps.iter().enumerate().skip(first) {
            let start = s.max(earliest);
            if start + duration <= e {
                return (start, Some(i));
            }
        }
        (self.tail.max(earliest), None)
    }

    fn reserve(&mut self, start: f64, duration: f64, gap: Option<usize>, max_gaps: usize) {
        let end = start + duration;
        match gap {
            Some(i) => {
                let (s, e) = self.gaps.remove(i);
                let pieces = [(s, start), (end, e)];
                for (k, p) in pieces.into_iter().filter(|(a, b)| b > a).enumerate() {
                    self.gaps.insert(i + k, p);
                }
            }
            None => {
                if start > self.tail {
                    self.gaps.push((self.tail, start));
                }
                self.tail = self.tail.max(end);
            }
        }
        if self.gaps.len() > max_gaps {
            self.gaps.remove(0);
        }
    }
}
