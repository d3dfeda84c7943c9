//! The target description: every hardware parameter of the simulated Dojo machine.
//!
//! A [`Target`] is a rectangular mesh of core sites spread over a grid of D1 chips, plus the
//! per-core, per-link, per-chip-edge and host/DIP numbers the simulator and the compiler's
//! cost model need. The values come from the "Project defaults" table of
//! `shared/specs/d1-hardware.md`; the constants below are the only place in the project where
//! they appear as literals. Everything else reads them from a `Target`.
//!
//! Coordinates: a [`CoreId`] is a *global* site coordinate across chips. A tile of 5 x 5
//! chips of 18 x 20 sites is 90 rows x 100 columns; chip `(i, j)` holds rows
//! `18 i .. 18 i + 17` and columns `20 j .. 20 j + 19`. Trays and ExaPODs continue the same
//! mesh over several tiles (`chips_per_tile`): a link between two chips is a chip-edge link
//! (bandwidth shared per D1 edge), one between two tiles also a tile-edge link.
//!
//! Routing is dimension-ordered XY: a packet first travels along its source row (the column
//! changes), then along the destination column (the row changes). Routes between two cores
//! of a rectangle therefore stay inside that rectangle, so a placement inside a rectangle
//! without disabled sites (see [`Target::find_free_block`]) never routes through one. The
//! compiler places on the [`UsableGrid`] instead (rows and columns holding disabled sites left
//! out, so a block may span chips): its routes may pass a harvested site's router, which
//! keeps forwarding.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{binary_size, RuntimeError};

// ---------------------------------------------------------------------------------------
// Project defaults (shared/specs/d1-hardware.md). *assumed* = no public source confirms it.
// ---------------------------------------------------------------------------------------

/// Core clock, 2.0 GHz [S].
const CLOCK_HZ: f64 = 2.0e9;
/// Core-site grid of one D1: 18 rows x 20 columns = 360 sites (*assumed*: not public).
const D1_CORE_GRID: (u32, u32) = (18, 20);
/// The 6 harvested sites of a D1 (chip-local `(row, col)`), leaving the 354 usable cores
/// Tesla quotes. *Assumed*: which sites are disabled is not public. They sit in the last row
/// (17) and the last column (19), so the 17 x 19 block at (0, 0), and in particular every
/// 16 x 16 block inside it, is fully enabled.
const D1_HARVESTED: [(u32, u32); 6] = [(4, 19), (9, 19), (14, 19), (17, 3), (17, 10), (17, 16)];
/// Chips per training tile: 5 x 5 [P].
const TILE_CHIP_GRID: (u32, u32) = (5, 5);
/// Tiles of a system tray as (rows, cols): 6 tiles [S]; the 2 x 3 arrangement is *assumed*.
const TRAY_TILE_GRID: (u32, u32) = (2, 3);
/// Tiles of an ExaPOD as (rows, cols): 120 tiles [S] (10 cabinets of 12); the 10 x 12
/// arrangement as one 2D mesh is *assumed* (the real system adds the DIP "Z-plane").
const EXAPOD_TILE_GRID: (u32, u32) = (10, 12);
/// SRAM per core: 1.25 MiB [P] size, *assumed* MiB.
const SRAM_BYTES: u64 = 1_310_720;
/// SRAM set aside on every core for code, the runtime and stacks: 128 KiB (*assumed*; no
/// public number). Program buffers may use `SRAM_BYTES - SRAM_RESERVE_BYTES` = 1,179,648 B.
const SRAM_RESERVE_BYTES: u64 = 131_072;
/// SRAM load bandwidth per core, 400 GB/s [P].
const SRAM_LOAD_BYTES_PER_S: f64 = 400.0e9;
/// SRAM store bandwidth per core, 270 GB/s [P].
const SRAM_STORE_BYTES_PER_S: f64 = 270.0e9;
/// BF16 / CFloat8 / CFloat16 matrix throughput per core: 512 FLOP/cycle [D].
const MATRIX_FLOPS_PER_CYCLE: f64 = 512.0;
/// FP32 throughput per core: 32 FLOP/cycle, one 64 B SIMD FMA [D].
const FP32_FLOPS_PER_CYCLE: f64 = 32.0;
/// SIMD width: 64 B [P].
const SIMD_BYTES: u32 = 64;
/// NoC link width: 64 B/cycle per link per direction [S] (256 B/cycle is the sensitivity
/// setting).
const LINK_BYTES_PER_CYCLE: f64 = 64.0;
/// Router latency per hop: 1 cycle (*assumed*).
const HOP_LATENCY_CYCLES: f64 = 1.0;
/// Injection + ejection latency of a NoC transfer: 5 cycles (*assumed*).
const INJECTION_LATENCY_CYCLES: f64 = 5.0;
/// D1 edge (chip-to-chip) bandwidth: 2 TB/s per edge per direction [D].
const CHIP_EDGE_BYTES_PER_S: f64 = 2.0e12;
/// Extra latency per chip-edge crossing: 100 ns (*assumed*).
const CHIP_EDGE_LATENCY_S: f64 = 100.0e-9;
/// Off-tile bandwidth per training-tile edge: 9 TB/s [P] (36 TB/s over 4 edges); taken per
/// direction, like the D1 edge (*assumed*).
const TILE_EDGE_BYTES_PER_S: f64 = 9.0e12;
/// Extra latency per tile-edge crossing, on top of the chip-edge crossing it also is: 100 ns
/// (*assumed*).
const TILE_EDGE_LATENCY_S: f64 = 100.0e-9;
/// HBM bandwidth of one DIP (host/HBM <-> mesh streaming): 800 GB/s [P].
const DIP_HBM_BYTES_PER_S: f64 = 800.0e9;
/// DIPs serving a training tile: 10, five on each of two edges (*assumed* from "5 per tile
/// edge").
const DIPS_PER_TILE: u32 = 10;
/// DIPs serving a single D1 (or a slice of one): 1 (*assumed*: a lone chip is fed by one DIP).
const DIPS_PER_D1: u32 = 1;
/// DIPs of a system tray: 20, the "V1 Dojo Training Matrix" of 6 tiles + 20 DIPs [S].
const DIPS_PER_TRAY: u32 = 20;
/// DIPs of an ExaPOD: 400 = 20 per 6 tiles x 20 [D] (400 x 32 GB = 12.8 TB, the quoted 13 TB).
const DIPS_PER_EXAPOD: u32 = 400;
/// Fixed cost of one host/DIP transfer (descriptor setup, DMA start, completion): 1 us
/// (*assumed*).
const HOST_LATENCY_S: f64 = 1.0e-6;

/// A core site in global mesh coordinates (across chips).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct CoreId {
    /// Global row, `0 .. Target::rows()`.
    pub row: u32,
    /// Global column, `0 .. Target::cols()`.
    pub col: u32,
}

impl CoreId {
    /// The site at global `(row, col)`.
    pub fn new(row: u32, col: u32) -> CoreId {
        CoreId { row, col }
    }
}

impl fmt::Display for CoreId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "({},{})", self.row, self.col)
    }
}

/// A target's mesh without the rows and columns that hold disabled sites
/// ([`Target::usable_grid`]): `rows[i]` and `cols[j]` are the global site row and column of
/// usable-grid coordinate `(i, j)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsableGrid {
    pub rows: Vec<u32>,
    pub cols: Vec<u32>,
}

impl UsableGrid {
    /// Size as (rows, cols).
    pub fn dims(&self) -> (u32, u32) {
        (self.rows.len() as u32, self.cols.len() as u32)
    }

    /// The site of usable-grid coordinate `(row, col)`, or None outside the grid.
    pub fn site(&self, (row, col): (u32, u32)) -> Option<CoreId> {
        Some(CoreId::new(*self.rows.get(row as usize)?, *self.cols.get(col as usize)?))
    }
}

/// One directed mesh link between two neighbouring sites.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Link {
    /// Sending site.
    pub from: CoreId,
    /// Receiving site (one hop away).
    pub to: CoreId,
}

/// The machine a Program runs on: mesh shape, harvested sites and every performance number.
///
/// Build one with [`Target::preset`]; all fields are public so sensitivity studies can change
/// a number (e.g. `link_bytes_per_cycle = 256.0`). [`Target::validate`] checks a hand-edited
/// target.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Target {
    /// Preset name, e.g. `"d1"`, `"d1:4x4"`, `"tile"`, `"core"`, `"exapod"`.
    pub name: String,
    /// Core clock in Hz.
    pub clock_hz: f64,
    /// Chips as (rows, cols): `(1, 1)` for a D1 or a slice of one, `(5, 5)` for a tile,
    /// `(10, 15)` for a tray, `(50, 60)` for an ExaPOD.
    pub chip_grid: (u32, u32),
    /// Core sites per chip as (rows, cols): `(18, 20)` for a full D1.
    pub core_grid: (u32, u32),
    /// Harvested (disabled) sites, global coordinates, sorted and unique.
    pub disabled: Vec<CoreId>,
    /// SRAM per core in bytes.
    pub sram_bytes: u64,
    /// SRAM per core reserved for code, runtime and stacks (not available to buffers).
    pub sram_reserve_bytes: u64,
    /// SRAM load bandwidth per core, bytes/s.
    pub sram_load_bytes_per_s: f64,
    /// SRAM store bandwidth per core, bytes/s.
    pub sram_store_bytes_per_s: f64,
    /// Matrix-unit throughput per core for BF16/CFloat8/CFloat16, FLOP/cycle.
    pub matrix_flops_per_cycle: f64,
    /// FP32 SIMD throughput per core, FLOP/cycle.
    pub fp32_flops_per_cycle: f64,
    /// SIMD width in bytes.
    pub simd_bytes: u32,
    /// NoC link width per link per direction, bytes/cycle.
    pub link_bytes_per_cycle: f64,
    /// Router latency per hop, cycles.
    pub hop_latency_cycles: f64,
    /// Injection + ejection latency of one transfer, cycles.
    pub injection_latency_cycles: f64,
    /// Chip-to-chip bandwidth per D1 edge per direction, bytes/s.
    pub chip_edge_bytes_per_s: f64,
    /// Extra latency per chip-edge crossing, seconds.
    pub chip_edge_latency_s: f64,
    /// Chips per training tile as (rows, cols); tile edges are where the chip grid crosses a
    /// multiple of it. (Absent from Programs written before tiles had edges: defaults 5 x 5.)
    #[serde(default = "default_chips_per_tile")]
    pub chips_per_tile: (u32, u32),
    /// Off-tile bandwidth per tile edge per direction, bytes/s.
    #[serde(default = "default_tile_edge_bytes_per_s")]
    pub tile_edge_bytes_per_s: f64,
    /// Extra latency per tile-edge crossing (on top of its chip-edge latency), seconds.
    #[serde(default = "default_tile_edge_latency_s")]
    pub tile_edge_latency_s: f64,
    /// HBM bandwidth of one DIP (host/HBM <-> mesh), bytes/s.
    pub dip_hbm_bytes_per_s: f64,
    /// DIPs (independent host/HBM channels) serving this target.
    pub dips: u32,
    /// Fixed cost of one host/DIP transfer, seconds.
    pub host_latency_s: f64,
}

const PRESET_HELP: &str = "expected core, d1, d1:RxC (R<=18, C<=20), tile, tray, exapod";

fn default_chips_per_tile() -> (u32, u32) {
    TILE_CHIP_GRID
}

fn default_tile_edge_bytes_per_s() -> f64 {
    TILE_EDGE_BYTES_PER_S
}

fn default_tile_edge_latency_s() -> f64 {
    TILE_EDGE_LATENCY_S
}

impl Target {
    /// A named target.
    ///
    /// - `core`: one core (a 1 x 1 slice of a D1).
    /// - `d1`: one D1, 18 x 20 sites with the 6 default harvested sites (354 cores).
    /// - `d1:RxC`: the R x C slice at the origin of one D1 (1 <= R <= 18, 1 <= C <= 20), with
    ///   the harvested sites that fall inside it.
    /// - `tile`: 5 x 5 D1 chips, every chip with the same harvested set (8,850 cores).
    /// - `tray`: 2 x 3 tiles = 10 x 15 chips (53,100 cores), 20 DIPs.
    /// - `exapod`: 10 x 12 tiles = 50 x 60 chips (1,062,000 cores, 900 x 1200 sites), 400
    ///   DIPs. Nothing is allocated per core: the simulator keeps state only for cores and
    ///   links a Program uses, and `disabled` (18,000 sites) is searched by bisection.
    pub fn preset(spec: &str) -> Result<Target, RuntimeError> {
        match spec {
            "core" => Ok(Target::d1_slice("core", 1, 1)),
            "d1" => Ok(Target::d1_slice("d1", D1_CORE_GRID.0, D1_CORE_GRID.1)),
            "tile" => Ok(Target::chips("tile", TILE_CHIP_GRID, DIPS_PER_TILE)),
            "tray" => Ok(Target::chips(
                "tray",
                (
                    TRAY_TILE_GRID.0 * TILE_CHIP_GRID.0,
                    TRAY_TILE_GRID.1 * TILE_CHIP_GRID.1,
                ),
                DIPS_PER_TRAY,
            )),
            "exapod" => Ok(Target::chips(
                "exapod",
                (
                    EXAPOD_TILE_GRID.0 * TILE_CHIP_GRID.0,
                    EXAPOD_TILE_GRID.1 * TILE_CHIP_GRID.1,
                ),
                DIPS_PER_EXAPOD,
            )),
            _ => {
                let Some(dims) = spec.strip_prefix("d1:") else {
                    return Err(RuntimeError::new(format!(
                        "unknown mesh '{spec}': {PRESET_HELP}"
                    )));
                };
                let parsed = dims
                    .split_once('x')
                    .and_then(|(r, c)| Some((r.parse::<u32>().ok()?, c.parse::<u32>().ok()?)));
                let Some((rows, cols)) = parsed else {
                    return Err(RuntimeError::new(format!(
                        "unknown mesh '{spec}': the slice must be written d1:RxC with whole \
                         numbers, e.g. d1:4x4; {PRESET_HELP}"
                    )));
                };
                if rows == 0 || cols == 0 || rows > D1_CORE_GRID.0 || cols > D1_CORE_GRID.1 {
                    return Err(RuntimeError::new(format!(
                        "mesh '{spec}' does not fit one D1: a slice needs 1..={} rows and \
                         1..={} columns of core sites, got {rows} x {cols}; use tile for more",
                        D1_CORE_GRID.0, D1_CORE_GRID.1
                    )));
                }
                Ok(Target::d1_slice(spec, rows, cols))
            }
        }
    }

    /// A grid of whole D1 chips, every chip with the same harvested set.
    fn chips(name: &str, grid: (u32, u32), dips: u32) -> Target {
        let mut t = Target::d1_slice(name, D1_CORE_GRID.0, D1_CORE_GRID.1);
        t.chip_grid = grid;
        t.dips = dips;
        let mut disabled = Vec::with_capacity((grid.0 * grid.1) as usize * D1_HARVESTED.len());
        for chip_row in 0..grid.0 {
            for chip_col in 0..grid.1 {
                for &(r, c) in &D1_HARVESTED {
                    disabled.push(CoreId::new(
                        chip_row * D1_CORE_GRID.0 + r,
                        chip_col * D1_CORE_GRID.1 + c,
                    ));
                }
            }
        }
        disabled.sort();
        t.disabled = disabled;
        t
    }

    /// The `rows x cols` slice at the origin of one D1, with the harvested sites inside it.
    fn d1_slice(name: &str, rows: u32, cols: u32) -> Target {
        let mut disabled: Vec<CoreId> = D1_HARVESTED
            .iter()
            .filter(|&&(r, c)| r < rows && c < cols)
            .map(|&(r, c)| CoreId::new(r, c))
            .collect();
        disabled.sort();
        Target {
            name: name.to_string(),
            clock_hz: CLOCK_HZ,
            chip_grid: (1, 1),
            core_grid: (rows, cols),
            disabled,
            sram_bytes: SRAM_BYTES,
            sram_reserve_bytes: SRAM_RESERVE_BYTES,
            sram_load_bytes_per_s: SRAM_LOAD_BYTES_PER_S,
            sram_store_bytes_per_s: SRAM_STORE_BYTES_PER_S,
            matrix_flops_per_cycle: MATRIX_FLOPS_PER_CYCLE,
            fp32_flops_per_cycle: FP32_FLOPS_PER_CYCLE,
            simd_bytes: SIMD_BYTES,
            link_bytes_per_cycle: LINK_BYTES_PER_CYCLE,
            hop_latency_cycles: HOP_LATENCY_CYCLES,
            injection_latency_cycles: INJECTION_LATENCY_CYCLES,
            chip_edge_bytes_per_s: CHIP_EDGE_BYTES_PER_S,
            chip_edge_latency_s: CHIP_EDGE_LATENCY_S,
            chips_per_tile: TILE_CHIP_GRID,
            tile_edge_bytes_per_s: TILE_EDGE_BYTES_PER_S,
            tile_edge_latency_s: TILE_EDGE_LATENCY_S,
            dip_hbm_bytes_per_s: DIP_HBM_BYTES_PER_S,
            dips: DIPS_PER_D1,
            host_latency_s: HOST_LATENCY_S,
        }
    }

    /// Checks a (possibly hand-edited) target: positive grids, finite positive rates,
    /// non-negative latencies, reserve within SRAM, disabled sites sorted, unique, in range.
    pub fn validate(&self) -> Result<(), RuntimeError> {
        let err = |what: String| {
            Err(RuntimeError::new(format!(
                "target '{}' is invalid: {what}",
                self.name
            )))
        };
        let (cr, cc) = self.chip_grid;
        let (sr, sc) = self.core_grid;
        if cr == 0 || cc == 0 || sr == 0 || sc == 0 {
            return err(format!(
                "chip_grid {:?} and core_grid {:?} must be at least 1 x 1",
                self.chip_grid, self.core_grid
            ));
        }
        if cr.checked_mul(sr).is_none() || cc.checked_mul(sc).is_none() {
            return err("the mesh has more than 2^32 rows or columns".to_string());
        }
        let rates = [
            ("clock_hz", self.clock_hz),
            ("sram_load_bytes_per_s", self.sram_load_bytes_per_s),
            ("sram_store_bytes_per_s", self.sram_store_bytes_per_s),
            ("matrix_flops_per_cycle", self.matrix_flops_per_cycle),
            ("fp32_flops_per_cycle", self.fp32_flops_per_cycle),
            ("link_bytes_per_cycle", self.link_bytes_per_cycle),
            ("chip_edge_bytes_per_s", self.chip_edge_bytes_per_s),
            ("tile_edge_bytes_per_s", self.tile_edge_bytes_per_s),
            ("dip_hbm_bytes_per_s", self.dip_hbm_bytes_per_s),
        ];
        for (name, v) in rates {
            if !(v.is_finite() && v > 0.0) {
                return err(format!("{name} must be a finite number > 0, got {v}"));
            }
        }
        let latencies = [
            ("hop_latency_cycles", self.hop_latency_cycles),
            ("injection_latency_cycles", self.injection_latency_cycles),
            ("chip_edge_latency_s", self.chip_edge_latency_s),
            ("tile_edge_latency_s", self.tile_edge_latency_s),
            ("host_latency_s", self.host_latency_s),
        ];
        for (name, v) in latencies {
            if !(v.is_finite() && v >= 0.0) {
                return err(format!("{name} must be a finite number >= 0, got {v}"));
            }
        }
        if self.chips_per_tile.0 == 0 || self.chips_per_tile.1 == 0 {
            return err(format!(
                "chips_per_tile {:?} must be at least 1 x 1",
                self.chips_per_tile
            ));
        }
        if self.simd_bytes == 0 {
            return err("simd_bytes must be > 0".to_string());
        }
        if self.dips == 0 {
            return err("dips must be >= 1 (host data enters the mesh through a DIP)".to_string());
        }
        if self.sram_reserve_bytes > self.sram_bytes {
            return err(format!(
                "sram_reserve_bytes {} exceeds sram_bytes {}",
                self.sram_reserve_bytes, self.sram_bytes
            ));
        }
        for (i, c) in self.disabled.iter().enumerate() {
            if !self.in_range(c) {
                return err(format!(
                    "disabled site {c} lies outside the {} x {} mesh",
                    self.rows(),
                    self.cols()
                ));
            }
            if i > 0 && self.disabled[i - 1] >= *c {
                return err(format!(
                    "disabled sites must be sorted by (row, col) without repeats; {} is \
                     followed by {c}",
                    self.disabled[i - 1]
                ));
            }
        }
        Ok(())
    }

    /// Global core rows across all chips.
    pub fn rows(&self) -> u32 {
        self.chip_grid.0.saturating_mul(self.core_grid.0)
    }

    /// Global core columns across all chips.
    pub fn cols(&self) -> u32 {
        self.chip_grid.1.saturating_mul(self.core_grid.1)
    }

    /// Whether `c` lies inside the mesh (enabled or not).
    pub fn in_range(&self, c: &CoreId) -> bool {
        c.row < self.rows() && c.col < self.cols()
    }

    /// Whether `c` is inside the mesh and not harvested (`disabled` is sorted, see
    /// [`Target::validate`], so this is a binary search: an ExaPOD has 18,000 such sites).
    pub fn is_enabled(&self, c: &CoreId) -> bool {
        self.in_range(c) && self.disabled.binary_search(c).is_err()
    }

    /// Number of enabled cores (354 for `d1`).
    pub fn enabled_cores(&self) -> u64 {
        let sites = u64::from(self.rows()) * u64::from(self.cols());
        let dead = self.disabled.iter().filter(|c| self.in_range(c)).count() as u64;
        sites.saturating_sub(dead)
    }

    /// SRAM per core available to Program buffers: `sram_bytes - sram_reserve_bytes`.
    pub fn usable_sram_bytes(&self) -> u64 {
        self.sram_bytes.saturating_sub(self.sram_reserve_bytes)
    }

    /// "1.25 MiB minus 128 KiB reserve", for messages about SRAM capacity.
    pub fn describe_sram(&self) -> String {
        format!(
            "{} minus {} reserve",
            binary_size(self.sram_bytes),
            binary_size(self.sram_reserve_bytes)
        )
    }

    /// The chip holding `c`, as (chip row, chip col).
    pub fn chip_of(&self, c: &CoreId) -> (u32, u32) {
        (
            c.row.checked_div(self.core_grid.0).unwrap_or(0),
            c.col.checked_div(self.core_grid.1).unwrap_or(0),
        )
    }

    /// The training tile holding `c`, as (tile row, tile col).
    pub fn tile_of(&self, c: &CoreId) -> (u32, u32) {
        let (r, c) = self.chip_of(c);
        (
            r.checked_div(self.chips_per_tile.0).unwrap_or(0),
            c.checked_div(self.chips_per_tile.1).unwrap_or(0),
        )
    }

    /// Mesh hops between `a` and `b` under XY routing (Manhattan distance).
    pub fn hops(&self, a: &CoreId, b: &CoreId) -> u32 {
        a.row.abs_diff(b.row) + a.col.abs_diff(b.col)
    }

    /// The links an XY-routed packet from `a` to `b` crosses, in order: first along row
    /// `a.row` (the column changes), then along column `b.col`. Empty when `a == b`.
    /// Routes do not avoid disabled sites (see the crate docs: a harvested site's router is
    /// assumed to keep forwarding).
    pub fn route(&self, a: &CoreId, b: &CoreId) -> Vec<Link> {
        let mut links = Vec::with_capacity(self.hops(a, b) as usize);
        let mut at = a.clone();
        while at.col != b.col {
            let next_col = if b.col > at.col {
                at.col + 1
            } else {
                at.col - 1
            };
            let next = CoreId::new(at.row, next_col);
            links.push(Link {
                from: at,
                to: next.clone(),
            });
            at = next;
        }
        while at.row != b.row {
            let next_row = if b.row > at.row {
                at.row + 1
            } else {
                at.row - 1
            };
            let next = CoreId::new(next_row, at.col);
            links.push(Link {
                from: at,
                to: next.clone(),
            });
            at = next;
        }
        links
    }

    /// Number of chip-edge crossings on the XY route from `a` to `b`.
    pub fn chip_crossings(&self, a: &CoreId, b: &CoreId) -> u32 {
        let (ar, ac) = self.chip_of(a);
        let (br, bc) = self.chip_of(b);
        // The row leg changes only the chip column, the column leg only the chip row.
        ar.abs_diff(br) + ac.abs_diff(bc)
    }

    /// Number of tile-edge crossings on the XY route from `a` to `b`.
    pub fn tile_crossings(&self, a: &CoreId, b: &CoreId) -> u32 {
        let (ar, ac) = self.tile_of(a);
        let (br, bc) = self.tile_of(b);
        ar.abs_diff(br) + ac.abs_diff(bc)
    }

    /// The usable grid: the mesh without a few whole rows and columns that hold every disabled
    /// site, so that any rectangle of it is free of disabled sites, across chip boundaries
    /// too. Compilers place in its coordinates and map to sites with [`UsableGrid::site`].
    /// Lines are removed greedily, the one with the most disabled sites left first (rows
    /// before columns, lower index first, on ties): for `d1` row 17 and column 19 go (17 x 19
    /// of the 354 cores), for `tile` each chip's row 17 and column 19 (85 x 95).
    pub fn usable_grid(&self) -> UsableGrid {
        let mut left: Vec<&CoreId> = self.disabled.iter().filter(|c| self.in_range(c)).collect();
        let (mut drop_rows, mut drop_cols) = (Vec::new(), Vec::new());
        while !left.is_empty() {
            let count = |key: &dyn Fn(&CoreId) -> u32| {
                let mut n = std::collections::BTreeMap::<u32, usize>::new();
                for c in &left {
                    *n.entry(key(c)).or_default() += 1;
                }
                // Most sites, then the lowest index.
                n.into_iter().max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0))).unwrap_or((0, 0))
            };
            let (row, in_row) = count(&|c| c.row);
            let (col, in_col) = count(&|c| c.col);
            if in_row >= in_col {
                drop_rows.push(row);
                left.retain(|c| c.row != row);
            } else {
                drop_cols.push(col);
                left.retain(|c| c.col != col);
            }
        }
        UsableGrid {
            rows: (0..self.rows()).filter(|r| !drop_rows.contains(r)).collect(),
            cols: (0..self.cols()).filter(|c| !drop_cols.contains(c)).collect(),
        }
    }

    /// The first origin, scanning global sites in row-major order, of a `rows x cols`
    /// rectangle that lies inside one chip and contains no disabled site. `None` when no such
    /// rectangle exists (or `rows` or `cols` is 0). Deterministic.
    pub fn find_free_block(&self, rows: u32, cols: u32) -> Option<CoreId> {
        if rows == 0 || cols == 0 || rows > self.core_grid.0 || cols > self.core_grid.1 {
            return None;
        }
        for r in 0..self.rows() {
            if r % self.core_grid.0 + rows > self.core_grid.0 {
                continue;
            }
            let mut c = 0;
            while c < self.cols() {
                if c % self.core_grid.1 + cols > self.core_grid.1 {
                    c += 1;
                    continue;
                }
                // A disabled site inside the candidate: skip past its column.
                let blocker = self
                    .disabled
                    .iter()
                    .filter(|d| d.row >= r && d.row < r + rows && d.col >= c && d.col < c + cols)
                    .map(|d| d.col)
                    .max();
                match blocker {
                    None => return Some(CoreId::new(r, c)),
                    Some(col) => c = col + 1,
                }
            }
        }
        None
    }
}
