//! How a mesh-level (`d1`) value is spread over a rectangular block of cores.
//!
//! A layout names a block of `rows x cols` cores at `origin` (global mesh coordinates) and,
//! for every tensor dimension, whether it is split over the block's rows (`0`), its columns
//! (`1`), over all its cores (`2`, [`ALL`]) or not split (`-1`). A mesh axis that no dimension
//! is split over holds replicas.
//! [`ALL`] splits one dimension into `rows x cols` chunks, chunk `k` on the block's `k`-th core
//! in row-major order (core `(r, c)` of the block holds chunk `r * cols + c`); it uses both
//! mesh axes, so no other dimension may be split. It is how the naive baseline plan
//! (`lower-to-d1{plan=naive}`) row-splits a tensor over every core of a 2D block; the helpers
//! here (chunk counts, shards, reshape locality) treat it as one axis of `rows x cols` chunks.
//! A dimension of size `n` split into `g` chunks gives chunk `k` the elements
//! `[k*n/g, (k+1)*n/g)`, so chunk sizes differ by at most one and none is empty (`n >= g`).
//!
//! Text form (an ordinary MLIR dictionary attribute):
//! `layout = {block = array<i64: r0, c0, rows, cols>, split = array<i64: 0, 1>}`.

use crate::ir::Attr;
use std::fmt;

/// Which mesh axis a tensor dimension is split over.
pub const ROWS: i8 = 0;
pub const COLS: i8 = 1;
pub const NONE: i8 = -1;
/// Split over all cores of the block, row-major (see the module doc).
pub const ALL: i8 = 2;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Layout {
    /// Global (row, col) of the block's top-left core.
    pub origin: (u32, u32),
    /// Block size (rows, cols).
    pub grid: (u32, u32),
    /// Per tensor dimension: [`ROWS`], [`COLS`], [`ALL`] or [`NONE`].
    pub split: Vec<i8>,
}

/// An axis-aligned box of a tensor.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Region {
    pub offsets: Vec<usize>,
    pub sizes: Vec<usize>,
}

impl Region {
    pub fn full(shape: &[usize]) -> Region {
        Region { offsets: vec![0; shape.len()], sizes: shape.to_vec() }
    }
    pub fn numel(&self) -> usize {
        self.sizes.iter().product()
    }
    /// The overlap of two boxes, if not empty.
    pub fn intersect(&self, other: &Region) -> Option<Region> {
        let mut offsets = Vec::with_capacity(self.offsets.len());
        let mut sizes = Vec::with_capacity(self.offsets.len());
        for d in 0..self.offsets.len() {
            let lo = self.offsets[d].max(other.offsets[d]);
            let hi = (self.offsets[d] + self.sizes[d]).min(other.offsets[d] + other.sizes[d]);
            if hi <= lo {
                return None;
            }
            offsets.push(lo);
            sizes.push(hi - lo);
        }
        Some(Region { offsets, sizes })
    }
    /// This box expressed relative to `base`'s origin.
    pub fn relative_to(&self, base: &Region) -> Region {
        Region {
            offsets: self.offsets.iter().zip(&base.offsets).map(|(a, b)| a - b).collect(),
            sizes: self.sizes.clone(),
        }
    }
}

/// Chunk `k` of `n` elements split `g` ways: (start, len).
pub fn chunk(n: usize, g: usize, k: usize) -> (usize, usize) {
    let start = k * n / g;
    let end = (k + 1) * n / g;
    (start, end - start)
}

impl Layout {
    /// All of the tensor on one core.
    pub fn single(core: (u32, u32), rank: usize) -> Layout {
        Layout { origin: core, grid: (1, 1), split: vec![NONE; rank] }
    }

    pub fn num_cores(&self) -> usize {
        (self.grid.0 * self.grid.1) as usize
    }

    /// The block's cores in row-major order, as global coordinates.
    pub fn cores(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        let (r0, c0) = self.origin;
        (0..self.grid.0).flat_map(move |r| (0..self.grid.1).map(move |c| (r0 + r, c0 + c)))
    }

    /// Chunk count along a mesh axis.
    pub fn axis_len(&self, axis: i8) -> usize {
        match axis {
            ROWS => self.grid.0 as usize,
            COLS => self.grid.1 as usize,
            ALL => self.num_cores(),
            _ => 1,
        }
    }

    /// Whether mesh axis `axis` is used by some dimension (otherwise it holds replicas).
    pub fn axis_used(&self, axis: i8) -> bool {
        self.split.contains(&axis) || self.split.contains(&ALL)
    }

    /// Check the layout against a tensor shape; the message says what is wrong.
    pub fn check(&self, shape: &[usize]) -> Result<(), String> {
        if self.split.len() != shape.len() {
            return Err(format!(
                "layout splits {} dimension(s) but the tensor has rank {}",
                self.split.len(),
                shape.len()
            ));
        }
        if self.grid.0 == 0 || self.grid.1 == 0 {
            return Err("layout block must have at least one core".into());
        }
        for axis in [ROWS, COLS, ALL] {
            if self.split.iter().filter(|s| **s == axis).count() > 1 {
                return Err(format!("layout splits two dimensions over mesh axis {axis}"));
            }
        }
        if self.split.contains(&ALL) && self.split.iter().any(|&s| s == ROWS || s == COLS) {
            return Err("a dimension split over all cores (2) leaves no mesh axis for another split".into());
        }
        for (d, (&s, &n)) in self.split.iter().zip(shape).enumerate() {
            if !(NONE..=ALL).contains(&s) {
                return Err(format!("layout split of dim {d} must be -1, 0, 1 or 2, got {s}"));
            }
            let g = self.axis_len(s);
            if s != NONE && n < g {
                return Err(format!("dim {d} of size {n} cannot be split into {g} chunks"));
            }
        }
        Ok(())
    }

    /// The box of the logical tensor that core `(row, col)` (global) holds.
    pub fn shard(&self, shape: &[usize], core: (u32, u32)) -> Region {
        let local = ((core.0 - self.origin.0) as usize, (core.1 - self.origin.1) as usize);
        let mut offsets = Vec::with_capacity(shape.len());
        let mut sizes = Vec::with_capacity(shape.len());
        for (&s, &n) in self.split.iter().zip(shape) {
            let (start, len) = match s {
                ROWS => chunk(n, self.grid.0 as usize, local.0),
                COLS => chunk(n, self.grid.1 as usize, local.1),
                ALL => chunk(n, self.num_cores(), local.0 * self.grid.1 as usize + local.1),
                _ => (0, n),
            };
            offsets.push(start);
            sizes.push(len);
        }
        Region { offsets, sizes }
    }

    /// The largest shard's element count.
    pub fn max_shard_numel(&self, shape: &[usize]) -> usize {
        shape
            .iter()
            .zip(&self.split)
            .map(|(&n, &s)| {
                let g = self.axis_len(s);
                n.div_ceil(g)
            })
            .product()
    }

    pub fn contains(&self, core: (u32, u32)) -> bool {
        core.0 >= self.origin.0
            && core.1 >= self.origin.1
            && core.0 < self.origin.0 + self.grid.0
            && core.1 < self.origin.1 + self.grid.1
    }

    pub fn to_attr(&self) -> Attr {
        Attr::Dict(vec![
            (
                "block".into(),
                Attr::Ints(vec![
                    self.origin.0 as i64,
                    self.origin.1 as i64,
                    self.grid.0 as i64,
                    self.grid.1 as i64,
                ]),
            ),
            ("split".into(), Attr::Ints(self.split.iter().map(|&s| s as i64).collect())),
        ])
    }

    pub fn from_attr(a: &Attr) -> Result<Layout, String> {
        let entries = a.as_dict().ok_or("layout must be a dictionary {block = ..., split = ...}")?;
        let get = |k: &str| {
            entries
                .iter()
                .find(|(n, _)| n == k)
                .and_then(|(_, v)| v.as_ints())
                .ok_or(format!("layout needs '{k}' as array<i64: ...>"))
        };
        let block = get("block")?;
        let split = get("split")?;
        if block.len() != 4 || block.iter().any(|&v| !(0..=u32::MAX as i64).contains(&v)) {
            return Err("layout block must be array<i64: row, col, rows, cols> of non-negative values".into());
        }
        if split.iter().any(|&s| !(-1..=2).contains(&s)) {
            return Err("layout split entries must be -1, 0, 1 or 2".into());
        }
        Ok(Layout {
            origin: (block[0] as u32, block[1] as u32),
            grid: (block[2] as u32, block[3] as u32),
            split: split.iter().map(|&s| s as i8).collect(),
        })
    }
}

/// Split dims of a shape as `(axis, product of the dims before it, size)`.
fn split_signature(shape: &[usize], split: &[i8]) -> Vec<(i8, usize, usize)> {
    let mut prefix = 1;
    let mut out = Vec::new();
    for (&n, &s) in shape.iter().zip(split) {
        if s != NONE {
            out.push((s, prefix, n));
        }
        prefix *= n;
    }
    out
}

/// Whether reshaping `in_shape` (split `in_split`) to `out_shape` (split `out_split`) on a
/// block of `grid` cores is a purely local operation, so that each core's row-major shard
/// reshapes into exactly its new shard. Split dims pair up in order, each pair on the same
/// mesh axis with the same product of the dims before it, and either the same size, or sizes
/// that the axis's chunk count divides (the split dim is the outermost of a group of dims
/// that the reshape merges or splits, e.g. `[32, 64]` rows-split -> `[2048]` rows-split).
pub fn reshape_is_local(grid: (u32, u32), in_shape: &[usize], in_split: &[i8], out_shape: &[usize], out_split: &[i8]) -> bool {
    let (a, b) = (split_signature(in_shape, in_split), split_signature(out_shape, out_split));
    let layout = Layout { origin: (0, 0), grid, split: vec![] };
    a.len() == b.len()
        && a.iter().zip(&b).all(|(&(ax, pa, na), &(bx, pb, nb))| {
            let g = layout.axis_len(ax);
            ax == bx && pa == pb && (na == nb || (na % g == 0 && nb % g == 0))
        })
}

/// Pairs `(input dim, output dim)` of a reshape that can carry a split: size > 1 on both
/// sides and equal product of the dims before them (equal sizes carry any split; different
/// sizes carry a split whose chunk count divides both, see [`reshape_is_local`]).
pub fn reshape_carriable_dims(in_shape: &[usize], out_shape: &[usize]) -> Vec<(usize, usize)> {
    let prefixes = |shape: &[usize]| {
        let mut p = 1;
        shape.iter().map(|&n| {
            let here = p;
            p *= n;
            here
        }).collect::<Vec<usize>>()
    };
    let (pi, po) = (prefixes(in_shape), prefixes(out_shape));
    let mut pairs = Vec::new();
    for (di, &n) in in_shape.iter().enumerate() {
        if n <= 1 {
            continue;
        }
        let same = |d: usize| out_shape[d] > 1 && po[d] == pi[di];
        let pick = (0..out_shape.len()).find(|&d| same(d) && out_shape[d] == n).or((0..out_shape.len()).find(|&d| same(d)));
        if let Some(dout) = pick {
            pairs.push((di, dout));
        }
    }
    pairs
}

impl fmt::Display for Layout {
    /// The attribute's text form, as it appears in the IR.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_attr())
    }
}
