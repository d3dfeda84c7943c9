//! Throughput of the CFloat conversions (`make bench-cfloat`): f32 → code and code → f32
//! over a 16 Mi-element tensor of normally distributed values scaled like activations,
//! with the bias chosen by D7. Std-only (a `harness = false` bench, not a timed test):
//! every case runs a warm-up and `REPS` timed passes and reports the best and the median.
//!
//! GB/s counts the f32 side only (4 bytes per element, read by an encode and written by a
//! decode); the codes add 1 or 2 bytes per element of memory traffic on top.
//! `CFLOAT_BENCH_ELEMS` overrides the element count; a command-line word keeps only the cases
//! whose name contains it (`cargo bench -p dojo-runtime --bench cfloat -- stochastic`).

use std::hint::black_box;
use std::time::{Duration, Instant};

use dojo_runtime::cfloat::{self, Code};
use dojo_runtime::{Codec, Format, Rounding};

const REPS: usize = 9;

fn main() {
    let n: usize = std::env::var("CFLOAT_BENCH_ELEMS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(16 << 20);
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get());
    let data = normal_data(n, 3.0);
    println!(
        "cfloat conversions: {n} elements ({} MiB of f32), best / median of {REPS}, GB/s of f32",
        (n * 4) >> 20
    );
    let sr = Rounding::Stochastic { seed: 1, stream: 7 };
    for format in [Format::Cf8_143, Format::Cf8_152] {
        run::<u8>(format, &data, sr, threads);
    }
    for format in [Format::Cf16Shp, Format::Bf16] {
        run::<u16>(format, &data, sr, threads);
    }
}

fn run<C: Code>(format: Format, data: &[f32], sr: Rounding, threads: usize) {
    let bias = cfloat::choose_bias(format, cfloat::amax(data), 1.0).expect("bias");
    let codec = Codec::new(format, bias).expect("codec");
    let mut codes = vec![C::default(); data.len()];
    let mut back = vec![0f32; data.len()];
    let bytes = data.len() * 4;
    let label = format!("{format}<{bias}>");
    for (mode, rounding) in [("nearest-even", Rounding::NearestEven), ("stochastic", sr)] {
        report(&format!("{label} encode {mode}, 1 thread"), bytes, || {
            codec
                .encode_slice(black_box(data), &mut codes, rounding)
                .expect("encode")
        });
        if threads > 1 {
            let what = format!("{label} encode {mode}, {threads} threads");
            report(&what, bytes, || {
                codec
                    .encode_slice_parallel(black_box(data), &mut codes, rounding, threads)
                    .expect("encode")
            });
        }
    }
    report(&format!("{label} decode, 1 thread"), bytes, || {
        codec
            .decode_slice(black_box(&codes), &mut back)
            .expect("decode")
    });
    // What the simulator's Convert does: the values rounded in place (encode and decode)
    // and their amax.
    report(&format!("{label} quantize in place + amax, 1 thread"), bytes, || {
        back.copy_from_slice(data);
        (cfloat::amax(&back), codec.quantize_slice(&mut back, Rounding::NearestEven))
    });
    black_box(&back);
}

fn report<T>(what: &str, bytes: usize, mut f: impl FnMut() -> T) {
    let mut filters = std::env::args().skip(1).filter(|a| !a.starts_with("--"));
    if filters.any(|w| !what.contains(&w)) {
        return;
    }
    black_box(f());
    let mut times: Vec<Duration> = (0..REPS)
        .map(|_| {
            let t = Instant::now();
            black_box(f());
            t.elapsed()
        })
        .collect();
    times.sort();
    let gbs = |d: Duration| bytes as f64 / d.as_secs_f64() / 1e9;
    println!(
        "  {what:<44} {:>6.2} GB/s  (median {:>6.2} GB/s, {:.2} ns/element)",
        gbs(times[0]),
        gbs(times[REPS / 2]),
        times[0].as_secs_f64() * 1e9 / (bytes / 4) as f64
    );
}

/// `n` values of N(0, sigma²) from a fixed xorshift stream (Box–Muller).
fn normal_data(n: usize, sigma: f64) -> Vec<f32> {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut uniform = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        ((state >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    };
    (0..n)
        .map(|_| {
            let (u, v) = (uniform(), uniform());
            (sigma * (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
        })
        .collect()
}
