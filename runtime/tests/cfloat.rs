//! CFloat numerics through the public API, against references written from the spec
//! (`../shared/specs/cfloat.md`) independently of the implementation: a decode formula in
//! f64, and round-to-nearest-even as "the nearer of the two neighbouring representable
//! values, compared with their exact midpoint".

use std::str::FromStr;

use dojo_runtime::cfloat::{self, Code};
use dojo_runtime::{Codec, Denormals, Flags, Format, Rounding};

/// The spec's table: (format, exponent bits, mantissa bits, signed).
const LAYOUTS: [(Format, u32, u32, bool); 4] = [
    (Format::Cf8_143, 4, 3, true),
    (Format::Cf8_152, 5, 2, true),
    (Format::Cf16Shp, 5, 10, true),
    (Format::Cf16Uhp, 6, 10, false),
];

const RULES: [Denormals; 2] = [Denormals::Literal, Denormals::Ieee];

/// The value of `code` by the spec's formula, in f64.
fn reference_decode(format: Format, bias: u8, rule: Denormals, code: u32) -> f64 {
    let &(_, e_bits, m_bits, signed) = LAYOUTS.iter().find(|l| l.0 == format).unwrap();
    let m = (code & ((1 << m_bits) - 1)) as f64 / (1u32 << m_bits) as f64;
    let e = (code >> m_bits) & ((1 << e_bits) - 1);
    let negative = signed && (code >> (e_bits + m_bits)) & 1 == 1;
    let b = bias as i32;
    let magnitude = match (e, rule) {
        (0, Denormals::Literal) => m * 2f64.powi(-b),
        (0, Denormals::Ieee) => m * 2f64.powi(1 - b),
        (e, _) => (1.0 + m) * 2f64.powi(e as i32 - b),
    };
    if negative {
        -magnitude
    } else {
        magnitude
    }
}

/// Round-to-nearest-even by the definition: the representable magnitudes (in code order,
/// plus the first value past the maximum, 2^(emax+1), which stands for overflow), the two
/// neighbours of the input and their exact midpoint.
struct Reference {
    codec: Codec,
    /// `values[c]` is the magnitude of magnitude-code `c`; the last entry is 2^(emax+1).
    values: Vec<f64>,
    m_bits: u32,
    signed: bool,
    sign_shift: u32,
}

impl Reference {
    fn new(format: Format, bias: u8, rule: Denormals) -> Reference {
        let &(_, e_bits, m_bits, signed) = LAYOUTS.iter().find(|l| l.0 == format).unwrap();
        let count = 1u32 << (e_bits + m_bits);
        let mut values: Vec<f64> = (0..count)
            .map(|c| reference_decode(format, bias, rule, c))
            .collect();
        values.push(2f64.powi((1 << e_bits) - bias as i32));
        assert!(values.windows(2).all(|w| w[0] < w[1]), "codes are monotone");
        Reference {
            codec: Codec::new(format, bias).unwrap().with_denormals(rule),
            values,
            m_bits,
            signed,
            sign_shift: e_bits + m_bits,
        }
    }

    fn max_code(&self) -> u32 {
        self.values.len() as u32 - 2
    }

    /// The expected code and the flags of one element.
    fn encode(&self, x: f32) -> (u32, Flags) {
        let mut flags = Flags::default();
        if x.is_nan() || (!self.signed && x < 0.0) {
            flags.invalid = 1;
            return (0, flags);
        }
        let a = x.abs() as f64;
        let mut code = match self.values.partition_point(|&v| v <= a) {
            0 => unreachable!("0 is representable"),
            i if i == self.values.len() => self.values.len() as u32 - 1, // beyond 2^(emax+1)
            i => {
                let (lo, hi) = (i - 1, i);
                let mid = (self.values[lo] + self.values[hi]) / 2.0; // exact
                if a < mid || self.values[lo] == a {
                    lo as u32
                } else if a > mid {
                    hi as u32
                } else if lo % 2 == 0 {
                    lo as u32
                } else {
                    hi as u32
                }
            }
        };
        if code > self.max_code() {
            code = self.max_code();
            flags.overflow = 1;
        }
        if code == 0 && x != 0.0 {
            flags.underflow = 1;
        }
        if code != 0 && code < 1 << self.m_bits {
            flags.denormal = 1;
        }
        let sign = if self.signed && x.is_sign_negative() {
            1 << self.sign_shift
        } else {
            0
        };
        (sign | code, flags)
    }

    /// Every neighbouring pair's midpoint, the values themselves, and the f32 numbers next to
    /// both, with both signs; then ±0, ±Inf, NaN and far overflow.
    fn boundary_inputs(&self) -> Vec<f32> {
        let mut out = Vec::new();
        for w in self.values.windows(2) {
            for v in [w[0] as f32, ((w[0] + w[1]) / 2.0) as f32] {
                for y in [v, next_up(v), next_down(v)] {
                    out.push(y);
                    out.push(-y);
                }
            }
        }
        out.extend([
            0.0,
            -0.0,
            f32::INFINITY,
            -f32::INFINITY,
            f32::NAN,
            -f32::NAN,
        ]);
        out.extend([f32::MAX, -f32::MAX, f32::from_bits(1), -f32::from_bits(1)]);
        out
    }

    /// Checks the codec against the reference on `inputs`, codes and total flags.
    fn check(&self, inputs: &[f32]) {
        let codes = encode(&self.codec, inputs, Rounding::NearestEven);
        let mut expected_flags = Flags::default();
        for (x, &code) in inputs.iter().zip(&codes) {
            let (want, flags) = self.reference_code(*x);
            assert_eq!(
                code,
                want,
                "{:?}: {x:e} ({:#010x}) encodes to {code:#x}, expected {want:#x}",
                self.codec,
                x.to_bits()
            );
            expected_flags += flags;
        }
        let flags = self.flags_of(inputs);
        assert_eq!(flags, expected_flags, "{:?}", self.codec);
    }

    fn reference_code(&self, x: f32) -> (u32, Flags) {
        self.encode(x)
    }

    fn flags_of(&self, inputs: &[f32]) -> Flags {
        match self.codec.format().code_bits() {
            8 => {
                self.codec
                    .encode_slice(inputs, &mut vec![0u8; inputs.len()], Rounding::NearestEven)
            }
            _ => self.codec.encode_slice(
                inputs,
                &mut vec![0u16; inputs.len()],
                Rounding::NearestEven,
            ),
        }
        .unwrap()
    }
}

/// Encodes through the slice API with the format's code width, widened to u32.
fn encode(codec: &Codec, inputs: &[f32], rounding: Rounding) -> Vec<u32> {
    match codec.format().code_bits() {
        8 => encode_as::<u8>(codec, inputs, rounding).0,
        16 => encode_as::<u16>(codec, inputs, rounding).0,
        _ => encode_as::<u32>(codec, inputs, rounding).0,
    }
}

fn encode_as<C: Code>(codec: &Codec, inputs: &[f32], rounding: Rounding) -> (Vec<u32>, Flags) {
    let mut codes = vec![C::default(); inputs.len()];
    let flags = codec.encode_slice(inputs, &mut codes, rounding).unwrap();
    (codes.into_iter().map(Code::to_u32).collect(), flags)
}

fn encode_at<C: Code>(codec: &Codec, inputs: &[f32], rounding: Rounding, first: u64) -> Vec<u32> {
    let mut codes = vec![C::default(); inputs.len()];
    codec
        .encode_slice_at(inputs, &mut codes, rounding, first)
        .unwrap();
    codes.into_iter().map(Code::to_u32).collect()
}

fn decode(codec: &Codec, codes: &[u32]) -> Vec<f32> {
    let mut out = vec![0f32; codes.len()];
    match codec.format().code_bits() {
        8 => {
            let codes: Vec<u8> = codes.iter().map(|&c| c as u8).collect();
            codec.decode_slice(&codes, &mut out)
        }
        16 => {
            let codes: Vec<u16> = codes.iter().map(|&c| c as u16).collect();
            codec.decode_slice(&codes, &mut out)
        }
        _ => codec.decode_slice(codes, &mut out),
    }
    .unwrap();
    out
}

fn all_codes(format: Format) -> Vec<u32> {
    (0..1u32 << format.code_bits()).collect()
}

/// The next f32 above a finite non-negative `x` (`f32::next_up` needs Rust 1.86).
fn next_up(x: f32) -> f32 {
    if x == 0.0 {
        return f32::from_bits(1);
    }
    f32::from_bits(x.to_bits() + 1)
}

/// The next f32 below a finite positive `x`.
fn next_down(x: f32) -> f32 {
    if x == 0.0 {
        return -f32::from_bits(1);
    }
    f32::from_bits(x.to_bits() - 1)
}

/// A small deterministic generator (SplitMix64), independent of the library's.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// An f32 with a random sign and mantissa and an exponent in `lo..=hi` (unbiased).
    fn float_in(&mut self, lo: i32, hi: i32) -> f32 {
        let e = lo + self.below((hi - lo + 1) as u64) as i32;
        let bits = ((e + 127) as u32) << 23 | (self.next() as u32 & 0x807f_ffff);
        f32::from_bits(bits)
    }
}

// ---------------------------------------------------------------------------------------
// Decoding

#[test]
fn every_code_of_every_bias_decodes_to_the_formula() {
    for (format, ..) in LAYOUTS {
        let codes = all_codes(format);
        for bias in 0..=63 {
            for rule in RULES {
                let codec = Codec::new(format, bias).unwrap().with_denormals(rule);
                for (&code, value) in codes.iter().zip(decode(&codec, &codes)) {
                    let want = reference_decode(format, bias, rule, code);
                    assert!(
                        value as f64 == want && value.is_sign_negative() == want.is_sign_negative(),
                        "{format}<{bias}> {rule:?}: {code:#x} decodes to {value:e}, expected {want:e}"
                    );
                    assert_eq!(codec.decode(code), value);
                }
            }
        }
    }
}

#[test]
fn worked_values_of_the_spec() {
    let c = Codec::new(Format::Cf8_143, 7).unwrap();
    assert_eq!(c.decode(0x38), 1.0);
    assert_eq!(c.decode(0x7f), 480.0);
    assert_eq!(c.max_finite(), 480.0);
    assert_eq!(c.decode(0x08), 0.015625);
    assert_eq!(c.min_normal(), 0.015625);
    assert_eq!(c.decode(0x01), 0.0009765625);
    assert_eq!(c.min_denormal(), 0.0009765625);
    assert!(c.decode(0x80) == 0.0 && c.decode(0x80).is_sign_negative());
    assert_eq!(c.decode(0xb8), -1.0);
    // IEEE denormals double the denormal scale.
    let ieee = c.with_denormals(Denormals::Ieee);
    assert_eq!(ieee.decode(0x01), 0.001953125);
    assert_eq!(ieee.decode(0x08), 0.015625);
    // Largest finite magnitude with bias 0.
    assert_eq!(
        Codec::new(Format::Cf8_143, 0).unwrap().max_finite(),
        61440.0
    );
    // Encoding the worked values gives the codes back.
    for (x, code) in [
        (1.0, 0x38),
        (480.0, 0x7f),
        (0.015625, 0x08),
        (0.0009765625, 0x01),
        (-0.0, 0x80),
    ] {
        assert_eq!(c.encode(x, Rounding::NearestEven, 0).0, code, "{x}");
    }
    // No Inf and no NaN codes: the all-ones exponent is an ordinary number.
    assert_eq!(c.decode(0x78), 256.0);
    assert_eq!(c.decode(0xff), -480.0);
}

#[test]
fn unsigned_half_precision_has_no_sign_bit() {
    let c = Codec::new(Format::Cf16Uhp, 31).unwrap();
    assert_eq!(c.decode(31 << 10), 1.0);
    assert_eq!(c.decode(0xffff), (2.0 - 2f32.powi(-10)) * 2f32.powi(32));
    let (code, flags) = c.encode(-2.0, Rounding::NearestEven, 0);
    assert_eq!((code, flags.invalid), (0, 1));
    let (code, flags) = c.encode(-0.0, Rounding::NearestEven, 0);
    assert_eq!(
        (code, flags),
        (0, Flags::default()),
        "-0 is +0, not invalid"
    );
}

#[test]
fn bf16_and_fp32_are_ieee() {
    let bf16 = Codec::new(Format::Bf16, 127).unwrap();
    let fp32 = Codec::new(Format::Fp32, 127).unwrap();
    let mut rng = Rng(3);
    let inputs: Vec<f32> = (0..200_000)
        .map(|_| f32::from_bits(rng.next() as u32))
        .collect();
    let (codes, _) = encode_as::<u16>(&bf16, &inputs, Rounding::NearestEven);
    for (x, &code) in inputs.iter().zip(&codes) {
        let want = half::bf16::from_f32(*x);
        assert_eq!(want.to_bits() as u32, code, "{x:e}");
        let back = bf16.decode(code);
        assert!(back.to_bits() == want.to_f32().to_bits() || back.is_nan());
    }
    let (codes, flags) = encode_as::<u32>(&fp32, &inputs, Rounding::NearestEven);
    assert!(flags.is_clear());
    assert!(codes.iter().zip(&inputs).all(|(&c, x)| c == x.to_bits()));
    let (_, flags) = encode_as::<u16>(
        &bf16,
        &[f32::MAX, 1e-40, 1e-45, f32::NAN, f32::INFINITY],
        Rounding::NearestEven,
    );
    assert_eq!(
        flags,
        Flags {
            invalid: 0,
            denormal: 1,
            overflow: 1,
            underflow: 1
        }
    );
}

// ---------------------------------------------------------------------------------------
// Round to nearest even

#[test]
fn encode_of_decode_is_the_identity_on_every_code() {
    for (format, ..) in LAYOUTS {
        let codes: Vec<u32> = all_codes(format);
        for bias in 0..=63 {
            for rule in RULES {
                let codec = Codec::new(format, bias).unwrap().with_denormals(rule);
                let values = decode(&codec, &codes);
                for rounding in [
                    Rounding::NearestEven,
                    Rounding::Stochastic { seed: 9, stream: 1 },
                ] {
                    let back = encode(&codec, &values, rounding);
                    assert!(back == codes, "{format}<{bias}> {rule:?} {rounding:?}");
                }
                let m = format.mantissa_bits();
                let denormals = codes
                    .iter()
                    .filter(|&&c| c & ((1 << (m + format.exponent_bits())) - 1) != 0)
                    .filter(|&&c| (c >> m) & ((1 << format.exponent_bits()) - 1) == 0)
                    .count() as u64;
                let flags = match format.code_bits() {
                    8 => encode_as::<u8>(&codec, &values, Rounding::NearestEven).1,
                    _ => encode_as::<u16>(&codec, &values, Rounding::NearestEven).1,
                };
                assert_eq!(
                    flags,
                    Flags {
                        denormal: denormals,
                        ..Flags::default()
                    }
                );
            }
        }
    }
}

#[test]
fn nearest_even_matches_the_exact_reference_on_boundaries_of_every_cf8_bias() {
    for format in [Format::Cf8_143, Format::Cf8_152] {
        for bias in 0..=63 {
            for rule in RULES {
                let r = Reference::new(format, bias, rule);
                r.check(&r.boundary_inputs());
            }
        }
    }
}

#[test]
fn nearest_even_matches_the_exact_reference_on_cf16_boundaries() {
    for format in [Format::Cf16Shp, Format::Cf16Uhp] {
        for bias in [0, 1, 15, 31, 62, 63] {
            for rule in RULES {
                let r = Reference::new(format, bias, rule);
                r.check(&r.boundary_inputs());
            }
        }
    }
}

#[test]
fn nearest_even_matches_the_exact_reference_on_random_inputs() {
    let mut rng = Rng(0x5eed);
    let mut total = 0;
    for (format, e_bits, m_bits, _) in LAYOUTS {
        for rule in RULES {
            for _ in 0..8 {
                let bias = rng.below(64) as u8;
                let r = Reference::new(format, bias, rule);
                let emax = (1 << e_bits) - bias as i32;
                let emin = -(bias as i32) - m_bits as i32 - 3;
                let mut inputs: Vec<f32> = (0..60_000).map(|_| rng.float_in(emin, emax)).collect();
                // Arbitrary bit patterns: the whole f32 range, NaNs and f32 denormals included.
                inputs.extend((0..20_000).map(|_| f32::from_bits(rng.next() as u32)));
                // The literal-denormal gap and the region just below it.
                let d = r.values[(1 << m_bits) - 1];
                let n = r.values[1 << m_bits];
                inputs.extend((0..20_000).map(|_| {
                    let t = rng.below(1 << 20) as f64 / (1 << 20) as f64;
                    let x = (d * 0.9 + t * (n - d * 0.9)) as f32;
                    if rng.below(2) == 0 {
                        x
                    } else {
                        -x
                    }
                }));
                total += inputs.len();
                r.check(&inputs);
            }
        }
    }
    assert!(total >= 6_000_000);
}

#[test]
fn the_literal_gap_rounds_to_the_nearer_neighbour() {
    // cf8_143 bias 7: largest denormal D = 7/8 · 2^-7, smallest normal N = 2^-6.
    let c = Codec::new(Format::Cf8_143, 7).unwrap();
    let d = 0.875 * 2f32.powi(-7);
    let n = 2f32.powi(-6);
    let mid = (d + n) / 2.0;
    let rne = |x: f32| c.encode(x, Rounding::NearestEven, 0);
    assert_eq!(
        rne(2f32.powi(-7)).0,
        0x07,
        "2^-bias is not representable: nearer to D"
    );
    assert_eq!(rne(next_down(mid)).0, 0x07);
    assert_eq!(rne(mid).0, 0x08, "a tie goes to the even code, N");
    assert_eq!(rne(next_up(mid)).0, 0x08);
    assert_eq!(rne(-next_down(mid)).0, 0x87);
    assert_eq!(
        rne(next_down(mid)).1,
        Flags {
            denormal: 1,
            ..Flags::default()
        }
    );
    assert!(rne(mid).1.is_clear());
}

#[test]
fn overflow_saturates_and_nan_becomes_positive_zero() {
    for (format, ..) in LAYOUTS {
        let c = Codec::new(format, 10).unwrap();
        let max = c.max_finite();
        let max_code = encode(&c, &[max], Rounding::NearestEven)[0];
        for x in [max * 1.5, f32::INFINITY, f32::MAX] {
            let (code, flags) = c.encode(x, Rounding::NearestEven, 0);
            assert_eq!(
                (code, flags),
                (
                    max_code,
                    Flags {
                        overflow: 1,
                        ..Flags::default()
                    }
                )
            );
        }
        if format.is_signed() {
            let (code, flags) = c.encode(-f32::INFINITY, Rounding::NearestEven, 0);
            assert_eq!(c.decode(code), -max);
            assert_eq!(flags.overflow, 1);
        }
        for nan in [f32::NAN, -f32::NAN] {
            let (code, flags) = c.encode(nan, Rounding::NearestEven, 0);
            assert_eq!(
                (code, flags),
                (
                    0,
                    Flags {
                        invalid: 1,
                        ..Flags::default()
                    }
                )
            );
        }
    }
}

#[test]
fn flags_are_counted_exactly() {
    let c = Codec::new(Format::Cf8_143, 7).unwrap();
    let mut inputs = Vec::new();
    for (x, n) in [
        (f32::NAN, 3),
        (f32::INFINITY, 2),
        (-f32::INFINITY, 1),
        (1e30, 4),         // overflow
        (500.0, 5),        // rounds up past 480: overflow
        (490.0, 6),        // rounds down to 480: no flag
        (1e-30, 7),        // underflow
        (-1e-30, 8),       // underflow to -0
        (0.0009765625, 9), // denormal, exact
        (-0.002, 10),      // denormal after rounding
        (1.0, 11),
        (0.0, 12),
    ] {
        inputs.extend(std::iter::repeat_n(x, n));
    }
    let (codes, flags) = encode_as::<u8>(&c, &inputs, Rounding::NearestEven);
    assert_eq!(
        flags,
        Flags {
            invalid: 3,
            denormal: 19,
            overflow: 12,
            underflow: 15
        }
    );
    assert_eq!(codes[inputs.len() - 13], 0x38);
    assert_eq!(
        codes[3 + 2 + 1 + 4 + 5 + 6 + 7],
        0x80,
        "-1e-30 keeps its sign"
    );
    assert_eq!(
        format!("{flags}"),
        "invalid=3 denormal=19 overflow=12 underflow=15"
    );
    // The same counts from the parallel path and from stochastic rounding's special cases.
    let mut out = vec![0u8; inputs.len()];
    assert_eq!(
        c.encode_slice_parallel(&inputs, &mut out, Rounding::NearestEven, 4)
            .unwrap(),
        flags
    );
}

// ---------------------------------------------------------------------------------------
// Stochastic rounding

/// Mean and round-up frequency of `n` stochastic encodes of `x`, checking every result is
/// one of the two neighbours `lo < x < hi`.
fn stochastic_stats(c: &Codec, x: f32, seed: u64, n: usize) -> (f64, f64, f32, f32) {
    let rne = c.encode(x, Rounding::NearestEven, 0).0;
    let inputs = vec![x; n];
    let codes = encode(c, &inputs, Rounding::Stochastic { seed, stream: 0 });
    let values = decode(c, &codes);
    let lo = values.iter().copied().fold(f32::INFINITY, f32::min);
    let hi = values.iter().copied().fold(-f32::INFINITY, f32::max);
    assert!(lo <= x && x <= hi, "{x:e}: results {lo:e}..{hi:e}");
    let ups = values.iter().filter(|&&v| v == hi).count();
    assert_eq!(
        ups + values.iter().filter(|&&v| v == lo).count(),
        n,
        "two neighbours only"
    );
    assert!(values.contains(&c.decode(rne)));
    let mean = values.iter().map(|&v| v as f64).sum::<f64>() / n as f64;
    (mean, ups as f64 / n as f64, lo, hi)
}

#[test]
fn stochastic_rounding_is_unbiased() {
    let n = 100_000;
    let c = Codec::new(Format::Cf8_143, 7).unwrap();
    let d = 0.875 * 2f32.powi(-7);
    let cases = [
        (c, 1.0 + 0.3 * 0.125),             // normal
        (c, -3.7),                          // normal, negative
        (c, 0.0009765625 * 2.6),            // denormal step
        (c, 0.0009765625 * 0.01),           // below the smallest denormal
        (c, d + 0.2 * (2f32.powi(-6) - d)), // the literal gap
        (c, 2f32.powi(-7) - 0.0001),        // just below 2^-bias
        (c.with_denormals(Denormals::Ieee), 0.0009765625 * 3.3),
        (c.with_denormals(Denormals::Ieee), 0.015625 * 0.99), // rounds into the smallest normal
        (Codec::new(Format::Cf8_152, 20).unwrap(), 0.0123),
        (
            Codec::new(Format::Cf16Shp, 15).unwrap(),
            1.0 + 0.37 / 1024.0,
        ),
        (Codec::new(Format::Cf16Uhp, 40).unwrap(), 3.3e-9),
        (Codec::new(Format::Bf16, 127).unwrap(), 1.0 + 0.61 / 128.0),
    ];
    for (i, (codec, x)) in cases.into_iter().enumerate() {
        let (mean, p, lo, hi) = stochastic_stats(&codec, x, 1 + i as u64, n);
        let p_exact = (x as f64 - lo as f64) / (hi as f64 - lo as f64);
        let sigma = (p_exact * (1.0 - p_exact) / n as f64).sqrt();
        assert!(
            (p - p_exact).abs() < 6.0 * sigma + 1e-9,
            "{codec:?} {x:e}: P(up) {p} vs {p_exact}"
        );
        let err = (mean - x as f64) / (hi - lo) as f64;
        assert!(
            err.abs() < 6.0 * sigma + 1e-9,
            "{codec:?} {x:e}: mean error {err} steps"
        );
    }
}

#[test]
fn stochastic_rounding_adds_random_bits_to_the_dropped_ones() {
    // 1 + 2^-5 in cf8_143 drops the bits 01 below the kept mantissa: up with probability 1/4.
    let c = Codec::new(Format::Cf8_143, 7).unwrap();
    let n = 1 << 18;
    let (_, p, lo, hi) = stochastic_stats(&c, 1.0 + 2f32.powi(-5), 42, n);
    assert_eq!((lo, hi), (1.0, 1.125));
    assert!((p - 0.25).abs() < 6.0 * (0.1875 / n as f64).sqrt(), "{p}");
    // Over random inputs of every magnitude, the mean error in steps vanishes.
    let mut rng = Rng(11);
    let inputs: Vec<f32> = (0..400_000).map(|_| rng.float_in(-9, 7).abs()).collect();
    let codes = encode(&c, &inputs, Rounding::Stochastic { seed: 5, stream: 3 });
    let values = decode(&c, &codes);
    let mut sum = 0.0;
    let mut count = 0;
    for (x, v) in inputs.iter().zip(&values) {
        if *x < 480.0 {
            // The spacing of cf8_143<7> around x: 2^(exponent − 3), at least the denormal step.
            let step = 2f64
                .powi((*x as f64).log2().floor() as i32 - 3)
                .max(0.0009765625);
            sum += (*v as f64 - *x as f64) / step;
            count += 1;
        }
    }
    assert!(
        (sum / count as f64).abs() < 3e-3,
        "mean error {}",
        sum / count as f64
    );
}

#[test]
fn stochastic_rounding_is_reproducible_and_seeded() {
    let mut rng = Rng(99);
    let inputs: Vec<f32> = (0..300_001).map(|_| rng.float_in(-12, 6)).collect();
    for (format, ..) in LAYOUTS {
        let c = Codec::new(format, 9).unwrap();
        let sr = |seed, stream| Rounding::Stochastic { seed, stream };
        let a = encode(&c, &inputs, sr(1, 0));
        assert_eq!(a, encode(&c, &inputs, sr(1, 0)), "same seed, same codes");
        let differ = |b: &[u32]| a.iter().zip(b).filter(|(x, y)| x != y).count();
        assert!(
            differ(&encode(&c, &inputs, sr(2, 0))) > inputs.len() / 10,
            "another seed"
        );
        assert!(
            differ(&encode(&c, &inputs, sr(1, 1))) > inputs.len() / 10,
            "another stream"
        );
        // Element i draws from (seed, stream, i) only: thread counts and the scalar API agree.
        let flags = c.quantize_slice(&mut inputs.clone(), sr(1, 0));
        for threads in [1, 2, 3, 8] {
            let mut out = vec![0u16; inputs.len()];
            if format.code_bits() == 8 {
                let mut out8 = vec![0u8; inputs.len()];
                let f = c
                    .encode_slice_parallel(&inputs, &mut out8, sr(1, 0), threads)
                    .unwrap();
                assert_eq!(f, flags);
                out = out8.into_iter().map(u16::from).collect();
            } else {
                let f = c
                    .encode_slice_parallel(&inputs, &mut out, sr(1, 0), threads)
                    .unwrap();
                assert_eq!(f, flags);
            }
            assert!(
                out.iter().zip(&a).all(|(&x, &y)| x as u32 == y),
                "{threads} threads"
            );
        }
        for i in [0, 1, 1023, 1024, 77_777, 300_000] {
            assert_eq!(c.encode(inputs[i], sr(1, 0), i as u64).0, a[i]);
        }
        // A part of a tensor draws as the whole does, also across index 2^32.
        let first = (1u64 << 32) - 700;
        let part = &inputs[..2000];
        let out = match format.code_bits() {
            8 => encode_at::<u8>(&c, part, sr(1, 0), first),
            _ => encode_at::<u16>(&c, part, sr(1, 0), first),
        };
        for (i, x) in part.iter().enumerate() {
            assert_eq!(
                c.encode(*x, sr(1, 0), first + i as u64).0,
                out[i],
                "{first} + {i}"
            );
        }
    }
}

#[test]
fn quantize_is_encode_then_decode() {
    let mut rng = Rng(5);
    let inputs: Vec<f32> = (0..5000).map(|_| rng.float_in(-20, 20)).collect();
    for rounding in [
        Rounding::NearestEven,
        Rounding::Stochastic { seed: 4, stream: 2 },
    ] {
        let c = Codec::new(Format::Cf8_152, 15).unwrap();
        let (codes, flags) = encode_as::<u8>(&c, &inputs, rounding);
        let mut q = inputs.clone();
        assert_eq!(c.quantize_slice(&mut q, rounding), flags);
        assert_eq!(q, decode(&c, &codes));
    }
}

// ---------------------------------------------------------------------------------------
// Bias choice and errors

#[test]
fn bias_is_the_largest_that_holds_amax() {
    let f = Format::Cf8_143;
    assert_eq!(cfloat::choose_bias(f, 480.0, 1.0).unwrap(), 7);
    assert_eq!(cfloat::choose_bias(f, -480.0, 1.0).unwrap(), 7);
    assert_eq!(cfloat::choose_bias(f, 481.0, 1.0).unwrap(), 6);
    assert_eq!(cfloat::choose_bias(f, 240.0, 2.0).unwrap(), 7);
    assert_eq!(cfloat::choose_bias(f, 1e30, 1.0).unwrap(), 0);
    assert_eq!(cfloat::choose_bias(f, f32::INFINITY, 1.0).unwrap(), 0);
    assert_eq!(cfloat::choose_bias(f, 1e-30, 1.0).unwrap(), 63);
    assert_eq!(cfloat::choose_bias(f, 0.0, 1.0).unwrap(), 7);
    assert_eq!(cfloat::choose_bias(Format::Cf8_152, 0.0, 1.0).unwrap(), 15);
    assert_eq!(cfloat::choose_bias(Format::Cf16Shp, 0.0, 1.0).unwrap(), 15);
    assert_eq!(cfloat::choose_bias(Format::Cf16Uhp, 0.0, 1.0).unwrap(), 31);
    assert_eq!(cfloat::choose_bias(Format::Bf16, 5.0, 1.0).unwrap(), 127);
    for format in Format::CFLOAT {
        let mut rng = Rng(format as u64);
        for _ in 0..1000 {
            let amax = rng.float_in(-80, 80).abs();
            let bias = cfloat::choose_bias(format, amax, 1.0).unwrap();
            let fits = |b: u8| Codec::new(format, b).unwrap().max_finite() >= amax;
            assert!(bias == 0 || fits(bias), "{format} {amax:e} -> {bias}");
            assert!(bias == 63 || !fits(bias + 1), "{format} {amax:e} -> {bias}");
        }
    }
    assert!(cfloat::choose_bias(f, f32::NAN, 1.0).is_err());
    assert!(cfloat::choose_bias(f, 1.0, 0.0).is_err());
    assert_eq!(cfloat::amax(&[1.0, -3.0, f32::NAN, 2.0]), 3.0);
    assert_eq!(cfloat::amax(&[]), 0.0);
    // Longer slices (eight running maxima, then a tail): the largest magnitude wherever it
    // is, NaNs never.
    for n in [8, 9, 37, 64] {
        for at in 0..n {
            let mut v: Vec<f32> = (0..n).map(|i| if i % 5 == 3 { f32::NAN } else { (i as f32 * 0.37).sin() }).collect();
            v[at] = -7.5;
            assert_eq!(cfloat::amax(&v), 7.5, "{n} values, largest at {at}");
        }
    }
}

#[test]
fn bad_arguments_are_errors_with_reasons() {
    let err = Codec::new(Format::Cf8_143, 64).unwrap_err().to_string();
    assert!(err.contains("0..=63"), "{err}");
    assert!(Codec::new(Format::Cf16Uhp, 63).is_ok());
    let err = Codec::new(Format::Bf16, 7).unwrap_err().to_string();
    assert!(err.contains("fixed bias 127"), "{err}");
    let err = Format::from_str("cf9").unwrap_err().to_string();
    assert!(
        err.contains("cf8_143, cf8_152, cf16_shp, cf16_uhp, bf16, fp32"),
        "{err}"
    );
    for f in Format::ALL {
        assert_eq!(Format::from_str(f.name()).unwrap(), f);
    }
    assert_eq!(Denormals::from_str("ieee").unwrap(), Denormals::Ieee);
    assert!(Denormals::from_str("IEEE").is_err());

    let c = Codec::new(Format::Cf8_143, 7).unwrap();
    let err = c
        .encode_slice(&[1.0, 2.0], &mut [0u8; 3], Rounding::NearestEven)
        .unwrap_err()
        .to_string();
    assert!(err.contains("equal lengths"), "{err}");
    let err = c
        .encode_slice(&[1.0], &mut [0u16; 1], Rounding::NearestEven)
        .unwrap_err()
        .to_string();
    assert!(err.contains("8-bit"), "{err}");
    assert!(c.decode_slice(&[0u32; 1], &mut [0.0]).is_err());
    assert!(c
        .encode_slice_parallel(&[], &mut [0u8; 0], Rounding::NearestEven, 4)
        .is_ok());
}
