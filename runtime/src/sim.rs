//! The `Device` trait and `SimMesh`, a functional + timing simulator of a Dojo mesh.
//!
//! # Functional model
//!
//! [`SimMesh::execute`] validates the Program ([`Program::validate`]), checks the host
//! inputs against `Program::inputs`, then runs the instructions in order on `f32` arrays:
//! one array per live buffer (zeroed at `Alloc`), host outputs zero until a `Store` or
//! `HostCopy` writes them. Kernel semantics are documented on [`crate::KernelOp`]; NaN and
//! infinities propagate as in eager PyTorch. The same Program and inputs always give
//! bit-identical outputs and Profile.
//!
//! # Timing model (first version)
//!
//! Time is `f64` seconds. Instructions are list-scheduled in program order onto resources,
//! each of which is busy until a known time:
//!
//! - `core_free[c]`: the core's compute pipeline (kernels, fills, same-core copies);
//! - `dma_free[c]`: the core's NoC injection port (outgoing core-to-core copies);
//! - `dip_free[k]` for each of `target.dips` host/HBM channels (Load/Store take the channel
//!   that frees first, lowest index on ties).
//!
//! Every buffer has `ready` (its last write completes) and `read_done` (its last read
//! completes). A write to a buffer also waits for `read_done` (write-after-read) and, when
//! it replaces the whole buffer, for `ready` (write-after-write).
//!
//! - **Kernel** on core `c`: starts at `max(core_free[c], ready[inputs], ready[out],
//!   read_done[out])`; lasts `max(flops / (fp32_flops_per_cycle * clock_hz),
//!   bytes_read / sram_load + bytes_written / sram_store)` with matmul flops `2 m n k`,
//!   elementwise one per output element, reduction one per input element, and
//!   Copy/Transpose/Reshape none. An accumulating matmul also reads its output. The
//!   simulator computes in f32, so the FP32 rate applies (`matrix_flops_per_cycle` is for
//!   the reduced-precision formats).
//! - **Copy between cores**: starts at `max(ready[src], dma_free[src core],
//!   read_done[dst])`; serialisation `bytes / (link_bytes_per_cycle * clock_hz)`, with the
//!   bandwidth capped at `chip_edge_bytes_per_s` when the route crosses a chip edge; latency
//!   `(injection_latency_cycles + hops * hop_latency_cycles) / clock_hz` plus
//!   `chip_edge_latency_s` per crossing. The injection port is busy for the serialisation;
//!   `ready[dst]` becomes `max(ready[dst], end)` (several copies may fill disjoint boxes of
//!   one buffer concurrently). The payload is added to every link of the XY route. Link
//!   contention is not modelled yet.
//! - **Copy on one core**: a core operation at SRAM bandwidth (`bytes / load + bytes /
//!   store`).
//! - **Load / Store**: a DIP channel is busy for `bytes / dip_hbm_bytes_per_s`; the data is
//!   there `host_latency_s` later (the fixed cost is pipelined across transfers, as a DMA
//!   engine with several descriptors in flight would). A Store waits for `ready[buf]`, a
//!   Load for `read_done[buf]`.
//! - **Fill**: a core operation writing the buffer at store bandwidth.
//! - **Alloc / Free / HostCopy**: no time.
//!
//! `simulated_seconds` is the latest end time of any operation. Busy time per core counts
//! kernels, fills and same-core copies.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::RuntimeError;
use crate::kernels;
use crate::program::{BufId, Instr, Program, Region};
use crate::shape::{numel, region_runs, show};
use crate::target::{CoreId, Link};

/// A host tensor: shape and row-major `f32` data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HostTensor {
    /// Dimensions, row-major.
    pub shape: Vec<usize>,
    /// `shape.iter().product()` values.
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
#[derive(Clone, Debug, Default)]
pub struct SimMesh;

impl SimMesh {
    /// A simulator.
    pub fn new() -> SimMesh {
        SimMesh
    }
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
    /// Every timed operation, in instruction order.
    pub timeline: Vec<TimelineEvent>,
}

impl Profile {
    /// The timeline in Chrome trace-event JSON (open in `chrome://tracing` or Perfetto):
    /// one thread per core pipeline, injection port and DIP channel; times in microseconds.
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
            events.push(serde_json::json!({
                "name": e.name, "ph": "X", "pid": 0, "tid": tid(&e.unit),
                "ts": e.start_s * 1e6, "dur": (e.end_s - e.start_s) * 1e6,
                "args": {"instr": e.instr}
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
        let stats = program.validate()?;
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
            if data.len() != n {
                return Err(RuntimeError::new(format!(
                    "input {i}: shape {} needs {n} values but the data has {}",
                    show(shape),
                    data.len()
                )));
            }
        }

        let mut sim = Sim::new(program, inputs)?;
        for (pc, instr) in program.instrs.iter().enumerate() {
            sim.step(pc, instr)
                .map_err(|e| e.context(format!("instruction {pc} ({})", instr.name())))?;
        }

        let mut busy: BTreeMap<CoreId, f64> = stats
            .peak_sram_per_core
            .iter()
            .map(|(c, _)| (c.clone(), 0.0))
            .collect();
        for (c, s) in sim.busy {
            busy.insert(c, s);
        }
        let profile = Profile {
            simulated_seconds: sim.makespan,
            cores_used: stats.cores_used,
            peak_sram_bytes: stats
                .peak_sram_per_core
                .iter()
                .map(|(_, b)| *b)
                .max()
                .unwrap_or(0),
            peak_sram_per_core: stats.peak_sram_per_core,
            mesh_bytes: sim.mesh_bytes,
            copy_bytes: sim.copy_bytes,
            host_bytes: sim.host_bytes,
            flops: sim.flops,
            busy_seconds_per_core: busy.into_iter().collect(),
            instructions: program.instrs.len(),
            link_bytes: sim.link_bytes.into_iter().collect(),
            timeline: sim.timeline,
        };
        let outputs = program
            .outputs
            .iter()
            .zip(sim.outputs)
            .map(|(decl, data)| HostTensor {
                shape: decl.shape.clone(),
                data,
            })
            .collect();
        Ok((outputs, profile))
    }
}

/// Simulator state for one run.
struct Sim<'a> {
    program: &'a Program,
    inputs: &'a [(&'a [usize], &'a [f32])],
    bufs: Vec<Vec<f32>>,
    outputs: Vec<Vec<f32>>,
    // timing
    core_free: BTreeMap<CoreId, f64>,
    dma_free: BTreeMap<CoreId, f64>,
    dip_free: Vec<f64>,
    ready: Vec<f64>,
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
}

/// A zeroed `f32` vector, as an error rather than an abort if memory runs out.
fn zeros(n: usize, what: &str) -> Result<Vec<f32>, RuntimeError> {
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|_| {
        RuntimeError::new(format!(
            "cannot allocate host memory for {what} ({n} elements)"
        ))
    })?;
    v.resize(n, 0.0);
    Ok(v)
}

/// Copies the box `src_region` of `src` into the box `dst_region` of `dst` (equal sizes).
fn copy_box(
    src: &[f32],
    src_shape: &[usize],
    src_region: &Region,
    dst: &mut [f32],
    dst_shape: &[usize],
    dst_region: &Region,
) -> Result<(), RuntimeError> {
    let from = region_runs(src_shape, src_region);
    let to = region_runs(dst_shape, dst_region);
    for (&(s, n), &(d, m)) in from.iter().zip(&to) {
        let (Some(s), Some(d)) = (src.get(s..s + n), dst.get_mut(d..d + m)) else {
            return Err(RuntimeError::new(
                "internal error: a region run falls outside its array after validation",
            ));
        };
        d.copy_from_slice(s);
    }
    Ok(())
}

fn max_of(times: impl IntoIterator<Item = f64>) -> f64 {
    times.into_iter().fold(0.0, f64::max)
}

impl<'a> Sim<'a> {
    fn new(
        program: &'a Program,
        inputs: &'a [(&'a [usize], &'a [f32])],
    ) -> Result<Sim<'a>, RuntimeError> {
        let mut outputs = Vec::with_capacity(program.outputs.len());
        for (i, decl) in program.outputs.iter().enumerate() {
            outputs.push(zeros(
                numel(&decl.shape).unwrap_or(0),
                &format!("output {i}"),
            )?);
        }
        let nb = program.buffers.len();
        Ok(Sim {
            program,
            inputs,
            bufs: vec![Vec::new(); nb],
            outputs,
            core_free: BTreeMap::new(),
            dma_free: BTreeMap::new(),
            dip_free: vec![0.0; program.target.dips as usize],
            ready: vec![0.0; nb],
            read_done: vec![0.0; nb],
            busy: BTreeMap::new(),
            makespan: 0.0,
            link_bytes: BTreeMap::new(),
            mesh_bytes: 0,
            copy_bytes: 0,
            host_bytes: 0,
            flops: 0,
            timeline: Vec::new(),
        })
    }

    fn bytes(&self, buf: BufId, elements: usize) -> u64 {
        elements as u64 * self.program.buffers[buf].dtype.size_bytes()
    }

    fn record(&mut self, instr: usize, name: String, unit: Unit, start_s: f64, end_s: f64) {
        self.makespan = self.makespan.max(end_s);
        self.timeline.push(TimelineEvent {
            instr,
            name,
            unit,
            start_s,
            end_s,
        });
    }

    /// Occupies core `c`'s pipeline from `earliest` for `duration`; returns the end time.
    fn on_core(
        &mut self,
        pc: usize,
        name: String,
        c: &CoreId,
        earliest: f64,
        duration: f64,
    ) -> f64 {
        let start = earliest.max(self.core_free.get(c).copied().unwrap_or(0.0));
        let end = start + duration;
        self.core_free.insert(c.clone(), end);
        *self.busy.entry(c.clone()).or_insert(0.0) += duration;
        self.record(pc, name, Unit::Core(c.clone()), start, end);
        end
    }

    /// Occupies the DIP channel that frees first from `earliest` for `bytes`; returns the
    /// time the data has arrived.
    fn on_dip(&mut self, pc: usize, name: &str, earliest: f64, bytes: u64) -> f64 {
        let t = &self.program.target;
        let mut k = 0;
        for (i, &f) in self.dip_free.iter().enumerate() {
            if f < self.dip_free[k] {
                k = i;
            }
        }
        let start = earliest.max(self.dip_free[k]);
        let busy_until = start + bytes as f64 / t.dip_hbm_bytes_per_s;
        let end = busy_until + t.host_latency_s;
        self.dip_free[k] = busy_until;
        self.host_bytes += bytes;
        self.record(pc, name.to_string(), Unit::Dip(k as u32), start, end);
        end
    }

    fn step(&mut self, pc: usize, instr: &Instr) -> Result<(), RuntimeError> {
        let prog = self.program;
        let t = &prog.target;
        match instr {
            Instr::Alloc { buf } => {
                let n = numel(&prog.buffers[*buf].shape).unwrap_or(0);
                self.bufs[*buf] = zeros(n, &format!("buffer {buf}"))?;
            }
            Instr::Free { buf } => {
                self.bufs[*buf] = Vec::new();
            }
            Instr::Load {
                input,
                src,
                buf,
                dst,
            } => {
                let (shape, data) = self.inputs[*input];
                let decl = &prog.buffers[*buf];
                copy_box(data, shape, src, &mut self.bufs[*buf], &decl.shape, dst)?;
                if decl.dtype == crate::program::DType::I64 {
                    kernels::check_exact_ints(&self.bufs[*buf], &format!("input {input}"))?;
                }
                let bytes = self.bytes(*buf, dst.elements());
                let end = self.on_dip(pc, "Load", self.read_done[*buf], bytes);
                self.ready[*buf] = self.ready[*buf].max(end);
            }
            Instr::Store {
                buf,
                src,
                output,
                dst,
            } => {
                let decl = &prog.buffers[*buf];
                let out_shape = &prog.outputs[*output].shape;
                copy_box(
                    &self.bufs[*buf],
                    &decl.shape,
                    src,
                    &mut self.outputs[*output],
                    out_shape,
                    dst,
                )?;
                let bytes = self.bytes(*buf, src.elements());
                let end = self.on_dip(pc, "Store", self.ready[*buf], bytes);
                self.read_done[*buf] = self.read_done[*buf].max(end);
            }
            Instr::HostCopy { input, output } => {
                if prog.inputs[*input].dtype == crate::program::DType::I64 {
                    kernels::check_exact_ints(self.inputs[*input].1, &format!("input {input}"))?;
                }
                self.outputs[*output] = self.inputs[*input].1.to_vec();
            }
            Instr::Copy {
                src,
                src_region,
                dst,
                dst_region,
            } => {
                let (s, d) = (&prog.buffers[*src], &prog.buffers[*dst]);
                if src == dst {
                    let from = self.bufs[*src].clone();
                    copy_box(
                        &from,
                        &s.shape,
                        src_region,
                        &mut self.bufs[*dst],
                        &d.shape,
                        dst_region,
                    )?;
                } else {
                    let (from, to) = if src < dst {
                        let (lo, hi) = self.bufs.split_at_mut(*dst);
                        (&lo[*src], &mut hi[0])
                    } else {
                        let (lo, hi) = self.bufs.split_at_mut(*src);
                        (&hi[0], &mut lo[*dst])
                    };
                    copy_box(from, &s.shape, src_region, to, &d.shape, dst_region)?;
                }
                let bytes = self.bytes(*src, src_region.elements());
                let earliest = self.ready[*src].max(self.read_done[*dst]);
                if s.core == d.core {
                    let dur = bytes as f64 / t.sram_load_bytes_per_s
                        + bytes as f64 / t.sram_store_bytes_per_s;
                    let end = self.on_core(pc, "Copy".to_string(), &s.core, earliest, dur);
                    self.ready[*dst] = self.ready[*dst].max(end);
                    self.read_done[*src] = self.read_done[*src].max(end);
                } else {
                    let hops = t.hops(&s.core, &d.core);
                    let crossings = t.chip_crossings(&s.core, &d.core);
                    let mut bw = t.link_bytes_per_cycle * t.clock_hz;
                    if crossings > 0 {
                        bw = bw.min(t.chip_edge_bytes_per_s);
                    }
                    let serial = bytes as f64 / bw;
                    let latency = (t.injection_latency_cycles
                        + f64::from(hops) * t.hop_latency_cycles)
                        / t.clock_hz
                        + f64::from(crossings) * t.chip_edge_latency_s;
                    let start = earliest.max(self.dma_free.get(&s.core).copied().unwrap_or(0.0));
                    let end = start + serial + latency;
                    self.dma_free.insert(s.core.clone(), start + serial);
                    self.ready[*dst] = self.ready[*dst].max(end);
                    self.read_done[*src] = self.read_done[*src].max(start + serial);
                    for link in t.route(&s.core, &d.core) {
                        *self.link_bytes.entry(link).or_insert(0) += bytes;
                    }
                    self.mesh_bytes += bytes * u64::from(hops);
                    self.copy_bytes += bytes;
                    self.record(
                        pc,
                        "Copy".to_string(),
                        Unit::Dma(s.core.clone()),
                        start,
                        end,
                    );
                }
            }
            Instr::Fill { buf, value } => {
                self.bufs[*buf].fill(*value);
                let decl = &prog.buffers[*buf];
                if decl.dtype == crate::program::DType::I64 {
                    kernels::check_exact_ints(&self.bufs[*buf], "the filled value")?;
                }
                let bytes = self.bytes(*buf, self.bufs[*buf].len());
                let earliest = self.ready[*buf].max(self.read_done[*buf]);
                let dur = bytes as f64 / t.sram_store_bytes_per_s;
                let end = self.on_core(pc, "Fill".to_string(), &decl.core, earliest, dur);
                self.ready[*buf] = end;
            }
            Instr::Kernel { op, inputs, output } => {
                let out_decl = &prog.buffers[*output];
                let in_shapes: Vec<&[usize]> = inputs
                    .iter()
                    .map(|&b| prog.buffers[b].shape.as_slice())
                    .collect();
                let result = {
                    let arrays: Vec<kernels::Array<'_>> = inputs
                        .iter()
                        .zip(&in_shapes)
                        .map(|(&b, &s)| (s, self.bufs[b].as_slice()))
                        .collect();
                    kernels::run(op, &arrays, &out_decl.shape, &self.bufs[*output])
                };
                self.bufs[*output] = result;
                if out_decl.dtype == crate::program::DType::I64 {
                    kernels::check_exact_ints(&self.bufs[*output], &op.name())?;
                }

                let flops = kernels::flops(op, &in_shapes, &out_decl.shape);
                let mut read: u64 = inputs
                    .iter()
                    .map(|&b| self.bytes(b, self.bufs[b].len()))
                    .sum();
                let written = self.bytes(*output, self.bufs[*output].len());
                if matches!(op, crate::KernelOp::MatMul { accumulate: true }) {
                    read += written;
                }
                let compute = flops as f64 / (t.fp32_flops_per_cycle * t.clock_hz);
                let memory = read as f64 / t.sram_load_bytes_per_s
                    + written as f64 / t.sram_store_bytes_per_s;
                let earliest = max_of(inputs.iter().map(|&b| self.ready[b]))
                    .max(self.ready[*output])
                    .max(self.read_done[*output]);
                let end =
                    self.on_core(pc, op.name(), &out_decl.core, earliest, compute.max(memory));
                self.ready[*output] = end;
                for &b in inputs {
                    self.read_done[b] = self.read_done[b].max(end);
                }
                self.flops += flops;
            }
        }
        Ok(())
    }
}
