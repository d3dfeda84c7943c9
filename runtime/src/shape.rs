//! Row-major shape arithmetic shared by validation and the simulator.
//!
//! Shapes are `&[usize]`, row-major (last dimension contiguous). Everything here is pure and
//! panic-free for inputs that passed [`crate::Program::validate`]; element counts are
//! computed with checked arithmetic so absurd declared shapes become errors, not overflows.

use crate::program::Region;

/// Number of elements of `shape` (1 for rank 0), or `None` on overflow.
pub(crate) fn numel(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

/// Row-major strides of `shape`, in elements.
pub(crate) fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1usize; shape.len()];
    for d in (0..shape.len().saturating_sub(1)).rev() {
        s[d] = s[d + 1].saturating_mul(shape[d + 1]);
    }
    s
}

/// Whether `from` broadcasts to `to` numpy-style: ranks right-aligned, each dimension of
/// `from` equal to the matching one of `to` or 1, and `from` not of higher rank.
pub(crate) fn broadcasts_to(from: &[usize], to: &[usize]) -> bool {
    if from.len() > to.len() {
        return false;
    }
    let lead = to.len() - from.len();
    from.iter()
        .zip(&to[lead..])
        .all(|(&f, &t)| f == t || f == 1)
}

/// Strides (length `to.len()`) that read a `from`-shaped array while walking `to`: 0 on
/// broadcast dimensions. Requires `broadcasts_to(from, to)`.
pub(crate) fn broadcast_strides(from: &[usize], to: &[usize]) -> Vec<usize> {
    let lead = to.len().saturating_sub(from.len());
    let fs = strides(from);
    (0..to.len())
        .map(|d| {
            if d < lead {
                0
            } else {
                let k = d - lead;
                if from[k] == 1 && to[d] != 1 {
                    0
                } else {
                    fs[k]
                }
            }
        })
        .collect()
}

/// For every multi-index of `shape` in row-major order, `sum(index[d] * strides[d])`.
pub(crate) fn strided_offsets(shape: &[usize], strides: &[usize]) -> Vec<usize> {
    let n = numel(shape).unwrap_or(0);
    let mut out = Vec::with_capacity(n);
    if n == 0 {
        return out;
    }
    let rank = shape.len();
    let mut idx = vec![0usize; rank];
    let mut off = 0usize;
    for _ in 0..n {
        out.push(off);
        let mut d = rank;
        while d > 0 {
            d -= 1;
            idx[d] += 1;
            off += strides[d];
            if idx[d] < shape[d] {
                break;
            }
            off -= strides[d] * shape[d];
            idx[d] = 0;
        }
    }
    out
}

/// The contiguous runs `(flat start, length)` of a box of a `shape` array, in row-major order
/// of the box. Requires the region to be in bounds with the array's rank.
pub(crate) fn region_runs(shape: &[usize], region: &Region) -> Vec<(usize, usize)> {
    let rank = shape.len();
    if region.sizes.contains(&0) {
        return Vec::new();
    }
    let st = strides(shape);
    let base: usize = region.offsets.iter().zip(&st).map(|(&o, &s)| o * s).sum();
    if rank == 0 {
        return vec![(0, 1)];
    }
    let last = rank - 1;
    strided_offsets(&region.sizes[..last], &st[..last])
        .into_iter()
        .map(|o| (base + o, region.sizes[last]))
        .collect()
}

/// `[8, 8]` for messages.
pub(crate) fn show(shape: &[usize]) -> String {
    format!("{shape:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_walk_row_major() {
        assert_eq!(strides(&[2, 3, 4]), vec![12, 4, 1]);
        assert_eq!(strided_offsets(&[2, 2], &[1, 2]), vec![0, 2, 1, 3]);
        assert_eq!(broadcast_strides(&[3, 1], &[2, 3, 4]), vec![0, 1, 0]);
        assert!(!broadcasts_to(&[1], &[]));
        assert!(broadcasts_to(&[], &[3]));
        let r = Region {
            offsets: vec![1, 2],
            sizes: vec![2, 3],
        };
        assert_eq!(region_runs(&[4, 8], &r), vec![(10, 3), (18, 3)]);
        assert_eq!(
            region_runs(
                &[],
                &Region {
                    offsets: vec![],
                    sizes: vec![]
                }
            ),
            vec![(0, 1)]
        );
    }
}
