//! Target presets, mesh geometry, XY routing and free-block search.

use dojo_runtime::{CoreId, Link, Target};

#[test]
fn presets_have_the_documented_core_counts() {
    let d1 = Target::preset("d1").unwrap();
    assert_eq!((d1.rows(), d1.cols()), (18, 20));
    assert_eq!(d1.disabled.len(), 6);
    assert_eq!(d1.enabled_cores(), 354);
    assert_eq!(d1.usable_sram_bytes(), 1_179_648);
    assert_eq!(d1.dips, 1);
    d1.validate().unwrap();

    let tile = Target::preset("tile").unwrap();
    assert_eq!((tile.rows(), tile.cols()), (90, 100));
    assert_eq!(tile.enabled_cores(), 8850);
    assert_eq!(tile.disabled.len(), 150);
    assert!(tile.disabled.windows(2).all(|w| w[0] < w[1]), "sorted");
    assert_eq!(tile.dips, 10);
    tile.validate().unwrap();

    let tray = Target::preset("tray").unwrap();
    assert_eq!((tray.rows(), tray.cols()), (180, 300));
    assert_eq!(tray.enabled_cores(), 6 * 8850);
    assert_eq!(tray.dips, 20);
    tray.validate().unwrap();
    let pod = Target::preset("exapod").unwrap();
    assert_eq!(pod.chip_grid, (50, 60));
    assert_eq!(pod.enabled_cores(), 1_062_000);
    assert_eq!(pod.dips, 400);
    assert!(!pod.is_enabled(&CoreId::new(49 * 18 + 17, 59 * 20 + 16)));
    assert!(pod.is_enabled(&CoreId::new(49 * 18 + 16, 59 * 20 + 16)));
    assert_eq!(pod.tile_of(&CoreId::new(899, 1199)), (9, 11));
    assert_eq!(
        pod.tile_crossings(&CoreId::new(0, 0), &CoreId::new(90, 100)),
        2
    );
    assert_eq!(
        pod.chip_crossings(&CoreId::new(0, 0), &CoreId::new(90, 100)),
        10
    );
    pod.validate().unwrap();

    let s = Target::preset("d1:4x4").unwrap();
    assert_eq!(s.enabled_cores(), 16);
    assert_eq!(s.name, "d1:4x4");
    assert_eq!(Target::preset("core").unwrap().enabled_cores(), 1);
    // A slice keeps the harvested sites inside it.
    let s = Target::preset("d1:18x4").unwrap();
    assert_eq!(s.disabled, vec![CoreId::new(17, 3)]);
    assert_eq!(s.enabled_cores(), 71);
}

#[test]
fn bad_preset_names_list_the_valid_ones() {
    let e = Target::preset("foo").unwrap_err();
    assert_eq!(
        e.message,
        "unknown mesh 'foo': expected core, d1, d1:RxC (R<=18, C<=20), tile, tray, exapod"
    );
    for bad in ["d1:19x4", "d1:4x21", "d1:0x3", "d1:4xq", "d1:", "D1"] {
        let e = Target::preset(bad).unwrap_err();
        assert!(e.message.contains(bad), "{bad}: {e}");
    }
    assert!(Target::preset("d1:19x4")
        .unwrap_err()
        .message
        .contains("19 x 4"));
}

#[test]
fn enabled_means_in_range_and_not_harvested() {
    let d1 = Target::preset("d1").unwrap();
    assert!(d1.is_enabled(&CoreId::new(0, 0)));
    assert!(!d1.is_enabled(&CoreId::new(17, 3)));
    assert!(!d1.is_enabled(&CoreId::new(18, 0)));
    assert!(!d1.is_enabled(&CoreId::new(0, 20)));
    let tile = Target::preset("tile").unwrap();
    assert!(!tile.is_enabled(&CoreId::new(18 + 17, 20 + 3)));
    assert_eq!(tile.chip_of(&CoreId::new(35, 59)), (1, 2));
    assert_eq!(tile.chip_of(&CoreId::new(36, 60)), (2, 3));
}

#[test]
fn xy_route_goes_along_the_row_then_the_column() {
    let t = Target::preset("d1").unwrap();
    let (a, b) = (CoreId::new(0, 0), CoreId::new(2, 3));
    let r = t.route(&a, &b);
    let hop = |x: (u32, u32), y: (u32, u32)| Link {
        from: CoreId::new(x.0, x.1),
        to: CoreId::new(y.0, y.1),
    };
    assert_eq!(
        r,
        vec![
            hop((0, 0), (0, 1)),
            hop((0, 1), (0, 2)),
            hop((0, 2), (0, 3)),
            hop((0, 3), (1, 3)),
            hop((1, 3), (2, 3))
        ]
    );
    assert!(t.route(&a, &a).is_empty());
    // Every route: length = hops, contiguous one-hop links from a to b, in both directions.
    let cores: Vec<CoreId> = [(0, 0), (5, 17), (17, 2), (9, 9), (3, 19)]
        .iter()
        .map(|&(r, c)| CoreId::new(r, c))
        .collect();
    for x in &cores {
        for y in &cores {
            let r = t.route(x, y);
            assert_eq!(r.len() as u32, t.hops(x, y));
            let mut at = x.clone();
            for l in &r {
                assert_eq!(l.from, at);
                assert_eq!(t.hops(&l.from, &l.to), 1);
                at = l.to.clone();
            }
            assert_eq!(&at, y);
        }
    }
}

#[test]
fn chip_crossings_count_edges_on_the_route() {
    let t = Target::preset("tile").unwrap();
    assert_eq!(t.chip_crossings(&CoreId::new(0, 0), &CoreId::new(0, 19)), 0);
    assert_eq!(t.chip_crossings(&CoreId::new(0, 0), &CoreId::new(0, 20)), 1);
    assert_eq!(
        t.chip_crossings(&CoreId::new(0, 0), &CoreId::new(89, 99)),
        8
    );
    let r = t.route(&CoreId::new(0, 0), &CoreId::new(40, 45));
    let crossing = r
        .iter()
        .filter(|l| t.chip_of(&l.from) != t.chip_of(&l.to))
        .count();
    assert_eq!(
        crossing as u32,
        t.chip_crossings(&CoreId::new(0, 0), &CoreId::new(40, 45))
    );
}

#[test]
fn free_blocks_avoid_harvested_sites_and_chip_edges() {
    let d1 = Target::preset("d1").unwrap();
    assert_eq!(d1.find_free_block(16, 16), Some(CoreId::new(0, 0)));
    assert_eq!(d1.find_free_block(17, 19), Some(CoreId::new(0, 0)));
    assert_eq!(d1.find_free_block(18, 20), None);
    assert_eq!(d1.find_free_block(18, 1), Some(CoreId::new(0, 0)));
    // Rows 4, 9, 14 and 17 each hold a harvested site in column 19 or in row 17.
    assert_eq!(d1.find_free_block(5, 20), None);
    assert_eq!(d1.find_free_block(4, 20), Some(CoreId::new(0, 0)));
    assert_eq!(d1.find_free_block(0, 3), None);

    // Block the origin: the scan moves right past the blocker, row-major.
    let mut t = Target::preset("d1:4x4").unwrap();
    t.disabled = vec![CoreId::new(0, 1)];
    assert_eq!(t.find_free_block(2, 2), Some(CoreId::new(0, 2)));
    assert_eq!(t.find_free_block(1, 4), Some(CoreId::new(1, 0)));

    // On a tile, a block never straddles two chips.
    let tile = Target::preset("tile").unwrap();
    assert_eq!(tile.find_free_block(17, 19), Some(CoreId::new(0, 0)));
    assert_eq!(tile.find_free_block(1, 21), None);
    assert_eq!(tile.find_free_block(19, 1), None);
}

#[test]
fn validate_rejects_broken_targets() {
    let mut t = Target::preset("d1").unwrap();
    t.clock_hz = 0.0;
    assert!(t.validate().unwrap_err().message.contains("clock_hz"));
    let mut t = Target::preset("d1").unwrap();
    t.disabled.reverse();
    assert!(t.validate().unwrap_err().message.contains("sorted"));
    let mut t = Target::preset("d1").unwrap();
    t.sram_reserve_bytes = t.sram_bytes + 1;
    assert!(t.validate().is_err());
}

#[test]
fn the_usable_grid_drops_the_lines_of_harvested_sites_across_chips() {
    let d1 = Target::preset("d1").unwrap();
    let g = d1.usable_grid();
    assert_eq!(g.dims(), (17, 19));
    assert_eq!(g.site((16, 18)), Some(CoreId::new(16, 18)));
    assert_eq!(g.site((17, 0)), None);

    let tile = Target::preset("tile").unwrap();
    let g = tile.usable_grid();
    assert_eq!(g.dims(), (85, 95));
    // Usable row 17 is chip row 1's first row; usable column 19 chip column 1's first.
    assert_eq!(g.site((17, 19)), Some(CoreId::new(18, 20)));
    assert_eq!(g.site((84, 94)), Some(CoreId::new(88, 98)));

    for name in ["core", "d1", "d1:4x4", "tile", "tray"] {
        let t = Target::preset(name).unwrap();
        let g = t.usable_grid();
        for &r in &g.rows {
            for &c in &g.cols {
                assert!(t.is_enabled(&CoreId::new(r, c)), "{name}: ({r}, {c}) is disabled");
            }
        }
    }

    // A lone disabled site: its row goes (rows before columns on ties).
    let mut t = Target::preset("d1:4x4").unwrap();
    t.disabled = vec![CoreId::new(0, 1)];
    let g = t.usable_grid();
    assert_eq!((g.rows.clone(), g.cols.clone()), (vec![1, 2, 3], vec![0, 1, 2, 3]));
    // Two in one column: the column goes.
    t.disabled = vec![CoreId::new(0, 1), CoreId::new(2, 1)];
    let g = t.usable_grid();
    assert_eq!((g.rows.clone(), g.cols.clone()), (vec![0, 1, 2, 3], vec![0, 2, 3]));
}
