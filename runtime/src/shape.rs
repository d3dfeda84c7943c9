//! Row-major shape arithmetic shared by validation and the simulator.
//!
//! Shapes are `&[usize]`, row-major (last dimension contiguous). Everything here is pure and
//! panic-free for inputs that passed [`crate::Program::validate`]; element counts are
//! computed with checked arithmetic so absurd declared shapes become errors, not overflows.

use smallvec::SmallVec;

/// A shape or stride vector: on the stack up to rank 8 (the simulator makes several per
/// instruction; allocating them cost about as much as a small instruction's work).
pub(crate) type Dims = SmallVec<[usize; 8]>;

/// Number of elements of `shape` (1 for rank 0), or `None` on overflow.
pub(crate) fn numel(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

/// Row-major strides of `shape`, in elements.
pub(crate) fn strides(shape: &[usize]) -> Dims {
    let mut s: Dims = smallvec::smallvec![1usize; shape.len()];
    for d in (0..shape.len().saturating_sub(1)).rev() {
        s[d] = s[d + 1].saturating_mul(shape[d + 1]);
    }
    s
}

/// How many leading dims of `dst` a box of shape `src` merges into its first dim, the rest
/// equal (`[4096, n]` and `[8, 512, n]`: 2; equal shapes: 1); `None` if it does not. A store
/// copies such a box into the destination in row-major order (an output viewed in another
/// shape).
pub fn merged_lead(src: &[usize], dst: &[usize]) -> Option<usize> {
    let (first, rest) = src.split_first()?;
    let q = (dst.len() + 1).checked_sub(src.len()).filter(|&q| q >= 1)?;
    (rest == &dst[q..] && numel(&dst[..q]) == Some(*first)).then_some(q)
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
pub(crate) fn broadcast_strides(from: &[usize], to: &[usize]) -> Dims {
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

/// `to.copy_from_slice(from)` (equal lengths), without a `memcpy` call for short rows: a
/// convolution's boxes and slices are mostly rows of 2 to 16 values, where the call costs
/// more than the copy. Short rows move as (possibly overlapping) 8- or 4-value blocks.
#[inline(always)]
pub(crate) fn copy_row(to: &mut [f32], from: &[f32]) {
    let n = to.len().min(from.len());
    let (to, from) = (&mut to[..n], &from[..n]);
    fn block<const B: usize>(to: &mut [f32], from: &[f32], at: usize) {
        if let (Some(t), Some(f)) = (to.get_mut(at..at + B), from.get(at..at + B).and_then(|f| <[f32; B]>::try_from(f).ok())) {
            t.copy_from_slice(&f);
        }
    }
    match n {
        0 => {}
        1..=3 => {
            to[0] = from[0];
            to[n / 2] = from[n / 2];
            to[n - 1] = from[n - 1];
        }
        4..=7 => {
            block::<4>(to, from, 0);
            block::<4>(to, from, n - 4);
        }
        8..=32 => {
            let mut i = 0;
            while i + 8 < n {
                block::<8>(to, from, i);
                i += 8;
            }
            block::<8>(to, from, n - 8);
        }
        _ => to.copy_from_slice(from),
    }
}

/// Walks the rows (all dimensions but the last) of a `shape` array in row-major order,
/// calling `f(starts, len, steps)` with each row's start offset under each of the `K` stride
/// vectors, the row length and each stride vector's step along the last dimension. A rank-0
/// shape is one row of one element; an empty shape has no rows.
pub(crate) fn for_each_row<const K: usize>(shape: &[usize], strides: [&[usize]; K], mut f: impl FnMut([usize; K], usize, [usize; K])) {
    if shape.contains(&0) {
        return;
    }
    let Some((&len, outer)) = shape.split_last() else {
        f([0; K], 1, [0; K]);
        return;
    };
    let last = outer.len();
    let steps: [usize; K] = std::array::from_fn(|k| strides[k][last]);
    let mut idx: Dims = smallvec::smallvec![0usize; outer.len()];
    let mut off = [0usize; K];
    loop {
        f(off, len, steps);
        // Odometer over the outer dimensions.
        let mut d = outer.len();
        loop {
            if d == 0 {
                return;
            }
            d -= 1;
            idx[d] += 1;
            for k in 0..K {
                off[k] += strides[k][d];
            }
            if idx[d] < outer[d] {
                break;
            }
            for k in 0..K {
                off[k] -= strides[k][d] * outer[d];
            }
            idx[d] = 0;
        }
    }
}

/// The same walk over fewer, longer rows: dims of `shape` of size 1 dropped, and each dim
/// merged into the one before it when every stride vector steps over it contiguously.
/// Returns the merged shape and the `K` merged stride vectors.
pub(crate) fn merge_dims<const K: usize>(shape: &[usize], strides: [&[usize]; K]) -> (Dims, [Dims; K]) {
    let mut dims = Dims::new();
    let mut merged: [Dims; K] = std::array::from_fn(|_| Dims::new());
    for (d, &n) in shape.iter().enumerate() {
        if n == 1 {
            continue;
        }
        let contiguous = (0..K).all(|k| merged[k].last().is_some_and(|&s| s == strides[k][d] * n));
        match dims.last_mut() {
            Some(last) if contiguous => {
                *last *= n;
                for k in 0..K {
                    if let Some(s) = merged[k].last_mut() {
                        *s = strides[k][d];
                    }
                }
            }
            _ => {
                dims.push(n);
                for k in 0..K {
                    merged[k].push(strides[k][d]);
                }
            }
        }
    }
    (dims, merged)
}

/// `[8, 8]` for messages.
pub(crate) fn show(shape: &[usize]) -> String {
    format!("{shape:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vecs<const K: usize>((dims, strides): (Dims, [Dims; K])) -> (Vec<usize>, [Vec<usize>; K]) {
        (dims.to_vec(), strides.map(|s| s.to_vec()))
    }

    #[test]
    fn rows_walk_row_major() {
        assert_eq!(strides(&[2, 3, 4]).as_slice(), [12, 4, 1]);
        assert_eq!(broadcast_strides(&[3, 1], &[2, 3, 4]).as_slice(), [0, 1, 0]);
        assert!(!broadcasts_to(&[1], &[]));
        assert!(broadcasts_to(&[], &[3]));
        let mut rows = Vec::new();
        for_each_row(&[2, 2, 3], [&[6, 3, 1], &[1, 2, 0]], |start, len, step| rows.push((start, len, step)));
        assert_eq!(
            rows,
            vec![([0, 0], 3, [1, 0]), ([3, 2], 3, [1, 0]), ([6, 1], 3, [1, 0]), ([9, 3], 3, [1, 0])]
        );
        let mut scalar = Vec::new();
        for_each_row(&[], [&[]], |start, len, _| scalar.push((start, len)));
        assert_eq!(scalar, vec![([0], 1)]);
        // [2, 1, 3, 4] contiguous in both: one run; a strided last dim stays apart.
        assert_eq!(vecs(merge_dims(&[2, 1, 3, 4], [&[12, 12, 4, 1], &[24, 9, 8, 2]])), (vec![24], [vec![1], vec![2]]));
        assert_eq!(vecs(merge_dims(&[2, 3], [&[3, 1], &[6, 2]])), (vec![6], [vec![1], vec![2]]));
        assert_eq!(vecs(merge_dims(&[2, 3], [&[3, 1], &[4, 1]])), (vec![2, 3], [vec![3, 1], vec![4, 1]]));
        assert_eq!(vecs(merge_dims::<1>(&[1, 1], [&[1, 1]])), (vec![], [vec![]]));
        let mut empty = 0;
        for_each_row(&[2, 0], [&[0, 1]], |_, _, _| empty += 1);
        assert_eq!(empty, 0);
    }
}
