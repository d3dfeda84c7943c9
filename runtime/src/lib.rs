//! torch-dojo runtime: the machine a compiler targets.
//!
//! Three layers, no knowledge of any IR:
//!
//! - [`target`]: the [`Target`] description, every hardware parameter of a simulated Dojo
//!   mesh (a single core, a D1 or a slice of one, a 5 x 5 training tile, a tray, an ExaPOD), presets, and the
//!   mesh geometry (XY routes, chips, free blocks around harvested sites).
//! - [`program`]: the [`Program`] format the machine executes (buffers in core SRAM,
//!   transfers, kernels), its JSON form and static validation.
//! - [`sim`]: the [`Device`] trait and [`SimMesh`], which executes a Program functionally in
//!   `f32` and times it (compute, SRAM, NoC links with contention, chip and tile edges,
//!   DIP/HBM), returning outputs and a [`Profile`] with per-op and whole-Program rooflines
//!   ([`roofline`]).
//!
//! Beside them, [`cfloat`] holds the number formats of the spec `cfloat.md` (CFloat8/16 with
//! their bias, bf16, f32): exact decoding, rounding encoders with status flags, the bias rule.
//!
//! **Architecture invariant:** every hardware number is a field of [`Target`]; the literals
//! live only in `target.rs`. Outputs are deterministic: equal Programs serialise to equal
//! bytes, and equal runs give bit-identical outputs and Profiles.

pub mod cfloat;
pub mod error;
mod crew;
mod kernels;
pub mod program;
pub mod roofline;
mod shape;
pub mod sim;
pub mod target;

pub use cfloat::{Codec, Denormals, Flags, Format, Rounding};
pub use error::RuntimeError;
pub use program::{
    BinaryOp, BufId, BufferDecl, DType, FusedArg, FusedFn, FusedStep, Instr, KernelOp, Program, ProgramStats, Region, TensorDecl, ValidProgram,
    UnaryOp, FORMAT_VERSION,
};
pub use roofline::{Bound, OpProfile, Roofline};
pub use shape::merged_lead;
pub use kernels::{stream_key, uniform};
pub use sim::{Device, HostTensor, Profile, ScaleProfile, SimMesh, TimelineEvent, Unit};
pub use target::{CoreId, Link, Target, UsableGrid};

/// Call once at start-up, on the process's main thread (the Python extension does at
/// import): the simulator then knows this process's OpenMP runtime, if torch loaded one, and
/// uses its threads only here, never in a child forked from here (libgomp's threads do not
/// survive a fork). Without the call, the first simulated run looks it up.
pub fn init_threads() {
    crew::init();
}
