//! `Layout` with a dimension split over all cores of a block (`ALL`, the naive plan's row split).

use dojo_compiler::layout::{reshape_is_local, ALL, COLS, NONE, ROWS};
use dojo_compiler::{Layout, Region};

#[test]
fn all_cores_split_is_row_major_over_the_block_and_tiles_the_tensor() {
    let l = Layout { origin: (2, 3), grid: (2, 3), split: vec![ALL, NONE] };
    let shape = [14, 5];
    assert_eq!(l.check(&shape), Ok(()));
    assert_eq!(l.axis_len(ALL), 6);
    assert_eq!(l.max_shard_numel(&shape), 3 * 5);
    let shards: Vec<Region> = l.cores().map(|c| l.shard(&shape, c)).collect();
    // Core (r, c) of the block holds chunk r * 3 + c: rows [k*14/6, (k+1)*14/6).
    let starts: Vec<usize> = shards.iter().map(|r| r.offsets[0]).collect();
    assert_eq!(starts, vec![0, 2, 4, 7, 9, 11]);
    assert_eq!(shards[5].sizes, vec![3, 5]);
    assert_eq!(shards.iter().map(Region::numel).sum::<usize>(), 14 * 5);
    // Both mesh axes are used: no replicas.
    assert!(l.axis_used(ROWS) && l.axis_used(COLS));
    // The text form round-trips.
    assert_eq!(Layout::from_attr(&l.to_attr()), Ok(l));
}

#[test]
fn all_cores_split_excludes_other_splits_and_needs_enough_elements() {
    let both = Layout { origin: (0, 0), grid: (2, 2), split: vec![ALL, COLS] };
    assert!(both.check(&[8, 8]).unwrap_err().contains("all cores"));
    let short = Layout { origin: (0, 0), grid: (2, 2), split: vec![ALL] };
    assert!(short.check(&[3]).unwrap_err().contains("cannot be split into 4 chunks"));
    let bad = Layout { origin: (0, 0), grid: (2, 2), split: vec![3] };
    assert!(bad.check(&[8]).unwrap_err().contains("-1, 0, 1 or 2"));
}

#[test]
fn reshape_locality_counts_all_cores_as_one_axis() {
    // [32, 64] -> [2048]: the outer dim carries a split whose chunk count divides both sizes.
    assert!(reshape_is_local((2, 4), &[32, 64], &[ALL, NONE], &[2048], &[ALL]));
    assert!(!reshape_is_local((3, 4), &[32, 64], &[ALL, NONE], &[2048], &[ALL]));
    // An ALL split does not pair with a split over one axis.
    assert!(!reshape_is_local((2, 4), &[32, 64], &[ALL, NONE], &[2048], &[ROWS]));
}
