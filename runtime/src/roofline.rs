//! The roofline: the physical lower bound a simulated time is held against.
//!
//! For a set of instructions (one compiler op, or the whole Program) the simulator tallies
//! the work it did ([`Tally`]) and [`Tally::roofline`] turns it into six bounds, each a time
//! no schedule on the target can beat:
//!
//! - **compute**: the kernels' FLOPs at the per-core peak of their format
//!   ([`core_flops_per_s`]), spread evenly over the cores the set used;
//! - **SRAM**: the kernels', fills' and local copies' SRAM traffic (bytes read at load
//!   bandwidth + bytes written at store bandwidth), spread evenly over the same cores;
//! - **injection**: core-to-core bytes over the sending cores' injection ports, or over the
//!   receiving cores' ejection ports (the router writes one 64 B packet into SRAM per
//!   cycle), whichever is larger; both at one link's bandwidth per core;
//! - **bisection**: bytes crossing the middle column or middle row of the mesh (each of the
//!   four directions separately) over that cut's capacity: one link per row (column), and
//!   when the cut is a chip or tile boundary, the D1-edge or tile-edge bandwidth per chip
//!   or tile along it;
//! - **latency**: the longest single transfer's fixed cost: injection + hops x hop latency
//!   + chip- and tile-edge crossing latencies (host transfers: `host_latency_s`);
//! - **host**: Load/Store bytes over all DIP channels.
//!
//! The bound is their maximum; the term that reaches it *binds*; efficiency = bound /
//! simulated time. Every term is a lower bound of the simulator's own model (each resource
//! it divides by is one the simulator keeps exclusive), so simulated time >= bound holds
//! for every op and for the whole Program; `passes/tests/roofline.rs` and
//! `runtime/tests/roofline.rs` check it on many random shapes and Programs.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::error::RuntimeError;
use crate::program::{DType, KernelOp, Program};
use crate::target::{CoreId, Target};

/// Peak FLOP/s of one core for a kernel: a matmul whose operands are both in a storage format
/// (bf16, CFloat8, CFloat16) runs on the matrix units (`matrix_flops_per_cycle`, 16x the FP32
/// rate on D1); everything else computes in FP32 on the SIMD unit (`fp32_flops_per_cycle`,
/// `../shared/specs/cfloat.md` D6: vector ops compute in FP32).
pub fn core_flops_per_s(t: &Target, op: &KernelOp, inputs: &[DType]) -> f64 {
    let matrix = matches!(op, KernelOp::MatMul { .. })
        && inputs.len() >= 2
        && inputs[..2].iter().all(|d| d.storage_format().is_some());
    if matrix {
        t.matrix_flops_per_cycle * t.clock_hz
    } else {
        t.fp32_flops_per_cycle * t.clock_hz
    }
}

/// Bandwidth of one NoC link (and of a core's injection or ejection port), bytes/s.
pub fn link_bytes_per_s(t: &Target) -> f64 {
    t.link_bytes_per_cycle * t.clock_hz
}

/// The term of the roofline that binds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Bound {
    /// FLOPs at the per-core peak of their format.
    Compute,
    /// Local SRAM traffic at the SRAM load/store bandwidth.
    Sram,
    /// Core-to-core bytes through the injection (or ejection) ports.
    Injection,
    /// Bytes crossing the mesh bisection.
    Bisection,
    /// The longest transfer's fixed latency.
    Latency,
    /// Host/HBM bytes through the DIP channels.
    Host,
}

impl Bound {
    /// Lower-case name, e.g. `compute`.
    pub fn name(self) -> &'static str {
        match self {
            Bound::Compute => "compute",
            Bound::Sram => "sram",
            Bound::Injection => "injection",
            Bound::Bisection => "bisection",
            Bound::Latency => "latency",
            Bound::Host => "host",
        }
    }
}

/// The bounds of one op or Program, seconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Roofline {
    /// The maximum of the terms below.
    pub seconds: f64,
    /// The term equal to `seconds` (the first in declaration order on ties); `None` when
    /// every term is 0 (nothing was timed).
    pub binding: Option<Bound>,
    /// Compute term.
    pub compute_s: f64,
    /// SRAM term.
    pub sram_s: f64,
    /// Injection/ejection term.
    pub injection_s: f64,
    /// Bisection term.
    pub bisection_s: f64,
    /// Latency term.
    pub latency_s: f64,
    /// Host (DIP/HBM) term.
    pub host_s: f64,
}

/// What one compiler op (per the Program's provenance) cost.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OpProfile {
    /// The op's name in the Program's `op_names`, e.g. `d1.matmul %7`.
    pub name: String,
    /// Instructions of the op (Alloc and Free included).
    pub instructions: usize,
    /// Start of its first timed instruction, seconds (0 if none).
    pub start_s: f64,
    /// End of its last timed instruction, seconds (0 if none).
    pub end_s: f64,
    /// `end_s - start_s`.
    pub simulated_seconds: f64,
    /// FLOPs of its kernels.
    pub flops: u64,
    /// Cores whose pipeline it used.
    pub cores: usize,
    /// Its roofline.
    pub roofline: Roofline,
    /// `roofline.seconds / simulated_seconds`; `None` when nothing was timed.
    pub efficiency: Option<f64>,
}

/// `bound / simulated`, `None` when `simulated` is 0.
pub fn efficiency(bound: f64, simulated: f64) -> Option<f64> {
    (simulated > 0.0).then(|| bound / simulated)
}

/// The four directed middle cuts: eastward and westward across the middle column boundary,
/// southward and northward across the middle row boundary.
const CUTS: usize = 4;

/// Work done by a set of timed instructions.
#[derive(Clone, Debug, Default)]
pub(crate) struct Tally {
    pub instructions: usize,
    timed: bool,
    pub start_s: f64,
    pub end_s: f64,
    pub flops: u64,
    compute_s: f64,
    sram_s: f64,
    pub cores: BTreeSet<CoreId>,
    injected: u64,
    senders: BTreeSet<CoreId>,
    ejected: u64,
    receivers: BTreeSet<CoreId>,
    cut_bytes: [u64; CUTS],
    host_bytes: u64,
    latency_s: f64,
}

/// The directed middle cuts the XY route from `a` to `b` crosses: the row leg (along
/// `a.row`) may cross the middle column boundary, the column leg (along `b.col`) the middle
/// row boundary.
fn cuts_crossed(t: &Target, a: &CoreId, b: &CoreId) -> [bool; CUTS] {
    let x = t.cols() / 2;
    let y = t.rows() / 2;
    [
        x > 0 && a.col < x && b.col >= x,
        x > 0 && a.col >= x && b.col < x,
        y > 0 && a.row < y && b.row >= y,
        y > 0 && a.row >= y && b.row < y,
    ]
}

/// Bytes per second that can cross each directed middle cut (see the module doc).
fn cut_capacity(t: &Target) -> [f64; CUTS] {
    let link = link_bytes_per_s(t);
    // A cut between sites `at - 1` and `at` of one axis (`sites_per_chip` sites per chip,
    // `chips_per_tile` chips per tile along it), crossed by `lanes` links, `chips` chip edges
    // and `tiles` tile edges when it is a chip or tile boundary.
    let capacity =
        |at: u32, sites_per_chip: u32, chips_per_tile: u32, lanes: u32, chips: u32, tiles: u32| {
            let mut c = f64::from(lanes) * link;
            if at > 0 && at % sites_per_chip == 0 {
                c = c.min(f64::from(chips) * t.chip_edge_bytes_per_s);
                if (at / sites_per_chip) % chips_per_tile == 0 {
                    c = c.min(f64::from(tiles) * t.tile_edge_bytes_per_s);
                }
            }
            c
        };
    let v = capacity(
        t.cols() / 2,
        t.core_grid.1,
        t.chips_per_tile.1,
        t.rows(),
        t.chip_grid.0,
        t.chip_grid.0.div_ceil(t.chips_per_tile.0),
    );
    let h = capacity(
        t.rows() / 2,
        t.core_grid.0,
        t.chips_per_tile.0,
        t.cols(),
        t.chip_grid.1,
        t.chip_grid.1.div_ceil(t.chips_per_tile.1),
    );
    [v, v, h, h]
}

impl Tally {
    fn span(&mut self, start: f64, end: f64) {
        if self.timed {
            self.start_s = self.start_s.min(start);
            self.end_s = self.end_s.max(end);
        } else {
            (self.start_s, self.end_s, self.timed) = (start, end, true);
        }
    }

    /// A core-pipeline operation: `compute_s` at the format's peak, `sram_s` of SRAM traffic.
    pub fn core_op(
        &mut self,
        core: &CoreId,
        flops: u64,
        compute_s: f64,
        sram_s: f64,
        start: f64,
        end: f64,
    ) {
        self.span(start, end);
        self.flops += flops;
        self.compute_s += compute_s;
        self.sram_s += sram_s;
        if !self.cores.contains(core) {
            self.cores.insert(core.clone());
        }
    }

    /// A core-to-core transfer of `bytes` with fixed latency `latency_s`.
    #[allow(clippy::too_many_arguments)]
    pub fn transfer(
        &mut self,
        t: &Target,
        from: &CoreId,
        to: &CoreId,
        bytes: u64,
        latency_s: f64,
        start: f64,
        end: f64,
    ) {
        self.span(start, end);
        self.injected += bytes;
        self.ejected += bytes;
        if !self.senders.contains(from) {
            self.senders.insert(from.clone());
        }
        if !self.receivers.contains(to) {
            self.receivers.insert(to.clone());
        }
        for (k, crossed) in cuts_crossed(t, from, to).into_iter().enumerate() {
            if crossed {
                self.cut_bytes[k] += bytes;
            }
        }
        self.latency_s = self.latency_s.max(latency_s);
    }

    /// A host/HBM transfer (Load or Store).
    pub fn host(&mut self, bytes: u64, latency_s: f64, start: f64, end: f64) {
        self.span(start, end);
        self.host_bytes += bytes;
        self.latency_s = self.latency_s.max(latency_s);
    }

    /// Simulated span of the timed instructions, seconds.
    pub fn simulated(&self) -> f64 {
        if self.timed {
            self.end_s - self.start_s
        } else {
            0.0
        }
    }

    /// The six bounds and the binding one.
    pub fn roofline(&self, t: &Target) -> Roofline {
        let per = |total: f64, n: usize| if n == 0 { 0.0 } else { total / n as f64 };
        let link = link_bytes_per_s(t);
        let capacity = cut_capacity(t);
        let bisection_s = self
            .cut_bytes
            .iter()
            .zip(capacity)
            .map(|(&b, c)| b as f64 / c)
            .fold(0.0, f64::max);
        let mut r = Roofline {
            seconds: 0.0,
            binding: None,
            compute_s: per(self.compute_s, self.cores.len()),
            sram_s: per(self.sram_s, self.cores.len()),
            injection_s: per(self.injected as f64 / link, self.senders.len())
                .max(per(self.ejected as f64 / link, self.receivers.len())),
            bisection_s,
            latency_s: self.latency_s,
            host_s: self.host_bytes as f64 / (f64::from(t.dips.max(1)) * t.dip_hbm_bytes_per_s),
        };
        let terms = [
            (Bound::Compute, r.compute_s),
            (Bound::Sram, r.sram_s),
            (Bound::Injection, r.injection_s),
            (Bound::Bisection, r.bisection_s),
            (Bound::Latency, r.latency_s),
            (Bound::Host, r.host_s),
        ];
        for (b, s) in terms {
            if s > r.seconds {
                r.seconds = s;
                r.binding = Some(b);
            }
        }
        r
    }

    /// The op profile of this tally under `name`.
    pub fn op_profile(&self, t: &Target, name: &str) -> OpProfile {
        let roofline = self.roofline(t);
        let simulated = self.simulated();
        OpProfile {
            name: name.to_string(),
            instructions: self.instructions,
            start_s: if self.timed { self.start_s } else { 0.0 },
            end_s: if self.timed { self.end_s } else { 0.0 },
            simulated_seconds: simulated,
            flops: self.flops,
            cores: self.cores.len(),
            efficiency: efficiency(roofline.seconds, simulated),
            roofline,
        }
    }
}

/// The Program's provenance is consistent: `instr_op` no longer than `instrs`, every index
/// inside `op_names`.
pub(crate) fn check_provenance(p: &Program) -> Result<(), RuntimeError> {
    if p.instr_op.len() > p.instrs.len() {
        return Err(RuntimeError::new(format!(
            "instr_op has {} entries but the Program has only {} instructions",
            p.instr_op.len(),
            p.instrs.len()
        )));
    }
    for (pc, op) in p.instr_op.iter().enumerate() {
        if let Some(op) = op {
            if *op as usize >= p.op_names.len() {
                return Err(RuntimeError::new(format!(
                    "instruction {pc} names op {op} but op_names has {} entries",
                    p.op_names.len()
                )));
            }
        }
    }
    Ok(())
}
