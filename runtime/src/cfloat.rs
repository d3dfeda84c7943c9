//! Tesla's configurable floating-point formats, exactly as `../shared/specs/cfloat.md` defines
//! them: CFloat8 (1/4/3 and 1/5/2), signed and unsigned CFloat16, with a bias of 0..=63, plus
//! bf16 (through the `half` crate) and an f32 passthrough.
//!
//! A [`Codec`] is one format with its bias and denormal rule (D2). It decodes codes to f32
//! exactly and encodes f32 to codes with round-to-nearest-even or seeded stochastic rounding
//! (D1, D3), saturating on overflow (D4), mapping NaN to `+0` (D5), and counting the status
//! flags of every call in [`Flags`]. [`choose_bias`] is the bias rule D7.
//!
//! ```
//! use dojo_runtime::cfloat::{Codec, Format, Rounding};
//!
//! let cf8 = Codec::new(Format::Cf8_143, 7)?;
//! let mut codes = [0u8; 3];
//! let flags = cf8.encode_slice(&[1.0, 500.0, f32::NAN], &mut codes, Rounding::NearestEven)?;
//! assert_eq!(codes, [0x38, 0x7f, 0x00]); // 500 saturates to 480; NaN becomes +0
//! assert_eq!((flags.overflow, flags.invalid), (1, 1));
//! assert_eq!(cf8.decode(0x7f), 480.0);
//! # Ok::<(), dojo_runtime::RuntimeError>(())
//! ```
//!
//! Choices the spec leaves open, fixed here:
//! - Nearest means nearest *representable* value. With whitepaper-literal denormals there is
//!   a gap between the largest denormal `D = (1 − 2^−M)·2^−bias` and the smallest normal
//!   `N = 2^(1−bias)`: inputs in `(D, N)` round to whichever is nearer, a tie to `N` (the even
//!   code); stochastic rounding there rounds up to `N` with probability `(x − D)/(N − D)`,
//!   drawn with 32 random bits.
//! - Stochastic rounding adds the top `k` bits of a 32-bit random word to the `k` dropped
//!   bits (D3), which is exact for `k ≤ 32`; an input more than 2^8 times below the denormal
//!   step (`k > 32`) rounds up with its probability truncated to 32 bits (an error below
//!   2^−32 of that step).
//! - The random word of element `i` is a keyed 32-bit hash of `i` under a key
//!   mixed from `(seed, stream)`: a pure function of the element, so any split of the work
//!   over threads gives bit-identical codes.
//! - `Overflow` is raised when the *rounded* magnitude exceeds the largest finite value
//!   (an input that rounds down to the maximum is not an overflow), and for ±Inf.
//!   `Underflow`: a nonzero finite input became ±0. `Denormal`: the result is a denormal
//!   code. `Invalid`: NaN, or a negative input (not −0) to `cf16_uhp`; the result is `+0` and
//!   no other flag is raised for that element. Underflow keeps the sign (`−0`).
//! - `cf16_uhp`'s default bias (31, for zero tensors under D7) follows the others:
//!   `2^(E−1) − 1`.
//! - bf16 is IEEE-like: round-to-nearest-even gives `half::bf16::from_f32`'s codes (decoding
//!   is `half`'s); NaN stays a quiet NaN and ±Inf stays ±Inf without a flag; a finite input
//!   that becomes ±Inf raises `Overflow`. f32 is a passthrough that raises nothing.
//!
//! **Invariant:** encoding and decoding are pure functions of (codec, rounding, element
//! index, value): results never depend on thread count, block size or CPU features.

use std::fmt;
use std::ops::{Add, AddAssign};
use std::str::FromStr;

use crate::error::{Result, RuntimeError};

/// A number format of the spec's table. Codes are `u8` (CFloat8), `u16` (CFloat16, bf16) or
/// `u32` (fp32) bit patterns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Format {
    /// CFloat8_1_4_3: sign, 4 exponent bits, 3 mantissa bits.
    Cf8_143,
    /// CFloat8_1_5_2: sign, 5 exponent bits, 2 mantissa bits.
    Cf8_152,
    /// Signed half precision ("CFP16"): sign, 5 exponent bits, 10 mantissa bits.
    Cf16Shp,
    /// Unsigned half precision: 6 exponent bits, 10 mantissa bits, no sign.
    Cf16Uhp,
    /// bfloat16 (IEEE-like, bias 127).
    Bf16,
    /// IEEE binary32 (passthrough).
    Fp32,
}

impl Format {
    /// Every format, in the spec's order.
    pub const ALL: [Format; 6] = [
        Format::Cf8_143,
        Format::Cf8_152,
        Format::Cf16Shp,
        Format::Cf16Uhp,
        Format::Bf16,
        Format::Fp32,
    ];

    /// The four configurable formats.
    pub const CFLOAT: [Format; 4] = [
        Format::Cf8_143,
        Format::Cf8_152,
        Format::Cf16Shp,
        Format::Cf16Uhp,
    ];

    /// The project's name: `cf8_143`, `cf8_152`, `cf16_shp`, `cf16_uhp`, `bf16`, `fp32`.
    pub fn name(self) -> &'static str {
        match self {
            Format::Cf8_143 => "cf8_143",
            Format::Cf8_152 => "cf8_152",
            Format::Cf16Shp => "cf16_shp",
            Format::Cf16Uhp => "cf16_uhp",
            Format::Bf16 => "bf16",
            Format::Fp32 => "fp32",
        }
    }

    /// Width of a code in bits (8, 16 or 32).
    pub fn code_bits(self) -> u32 {
        match self {
            Format::Cf8_143 | Format::Cf8_152 => 8,
            Format::Cf16Shp | Format::Cf16Uhp | Format::Bf16 => 16,
            Format::Fp32 => 32,
        }
    }

    /// Width of the exponent field.
    pub fn exponent_bits(self) -> u32 {
        match self {
            Format::Cf8_143 => 4,
            Format::Cf8_152 | Format::Cf16Shp => 5,
            Format::Cf16Uhp => 6,
            Format::Bf16 | Format::Fp32 => 8,
        }
    }

    /// Width of the mantissa (fraction) field.
    pub fn mantissa_bits(self) -> u32 {
        match self {
            Format::Cf8_143 => 3,
            Format::Cf8_152 => 2,
            Format::Cf16Shp | Format::Cf16Uhp => 10,
            Format::Bf16 => 7,
            Format::Fp32 => 23,
        }
    }

    /// Whether codes carry a sign bit (all but `cf16_uhp`).
    pub fn is_signed(self) -> bool {
        self != Format::Cf16Uhp
    }

    /// Whether the bias is configurable (the four CFloat formats).
    pub fn is_cfloat(self) -> bool {
        !matches!(self, Format::Bf16 | Format::Fp32)
    }

    /// The bias of an all-zero tensor under D7 (cf8_143: 7, cf8_152: 15, shp: 15, uhp: 31),
    /// and the fixed bias 127 of bf16 and fp32.
    pub fn default_bias(self) -> u8 {
        match self {
            Format::Bf16 | Format::Fp32 => 127,
            f => ((1u32 << (f.exponent_bits() - 1)) - 1) as u8,
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Format {
    type Err = RuntimeError;

    fn from_str(name: &str) -> Result<Format> {
        Format::ALL
            .into_iter()
            .find(|f| f.name() == name)
            .ok_or_else(|| {
                RuntimeError::new(format!(
                    "unknown number format {name:?}; expected one of {}",
                    Format::ALL.map(Format::name).join(", ")
                ))
            })
    }
}

/// How a CFloat code with a zero exponent field is read (D2).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Denormals {
    /// The whitepaper's literal scale `0.m · 2^(−bias)` (the default; leaves a gap below the
    /// smallest normal `2^(1−bias)`).
    #[default]
    Literal,
    /// IEEE-style `0.m · 2^(1−bias)`.
    Ieee,
}

impl Denormals {
    /// `"literal"` or `"ieee"`.
    pub fn name(self) -> &'static str {
        match self {
            Denormals::Literal => "literal",
            Denormals::Ieee => "ieee",
        }
    }
}

impl FromStr for Denormals {
    type Err = RuntimeError;

    fn from_str(name: &str) -> Result<Denormals> {
        match name {
            "literal" => Ok(Denormals::Literal),
            "ieee" => Ok(Denormals::Ieee),
            _ => Err(RuntimeError::new(format!(
                "unknown denormal rule {name:?}; expected \"literal\" or \"ieee\""
            ))),
        }
    }
}

/// The rounding mode of an encode (D1, D3).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Rounding {
    /// Round to nearest, ties to even (the default).
    #[default]
    NearestEven,
    /// Stochastic rounding with a counter-based random stream: element `i` of a slice draws
    /// from `(seed, stream, i)` only. `stream` tells tensors apart (a tensor id).
    Stochastic { seed: u64, stream: u64 },
}

/// Status flags of one conversion call, as counts of elements (whitepaper p.9).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Flags {
    /// NaN input, or a negative input to `cf16_uhp` (the result is `+0`).
    pub invalid: u64,
    /// The result is a denormal.
    pub denormal: u64,
    /// The rounded magnitude exceeded the largest finite value, or the input was ±Inf
    /// (the result saturates).
    pub overflow: u64,
    /// A nonzero input became ±0.
    pub underflow: u64,
}

impl Flags {
    /// No flag raised.
    pub fn is_clear(&self) -> bool {
        *self == Flags::default()
    }
}

impl Add for Flags {
    type Output = Flags;

    fn add(self, o: Flags) -> Flags {
        Flags {
            invalid: self.invalid + o.invalid,
            denormal: self.denormal + o.denormal,
            overflow: self.overflow + o.overflow,
            underflow: self.underflow + o.underflow,
        }
    }
}

impl AddAssign for Flags {
    fn add_assign(&mut self, o: Flags) {
        *self = *self + o;
    }
}

impl fmt::Display for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid={} denormal={} overflow={} underflow={}",
            self.invalid, self.denormal, self.overflow, self.underflow
        )
    }
}

/// An unsigned integer type that holds codes: `u8`, `u16` or `u32`.
pub trait Code: Copy + Default + Send + Sync + 'static {
    /// Width in bits; must equal the format's [`Format::code_bits`].
    const BITS: u32;
    /// Truncating conversion (codes always fit).
    fn from_u32(v: u32) -> Self;
    /// Widening conversion.
    fn to_u32(self) -> u32;
}

macro_rules! impl_code {
    ($t:ty) => {
        impl Code for $t {
            const BITS: u32 = <$t>::BITS;
            #[inline(always)]
            fn from_u32(v: u32) -> $t {
                v as $t
            }
            #[inline(always)]
            fn to_u32(self) -> u32 {
                self as u32
            }
        }
    };
}
impl_code!(u8);
impl_code!(u16);
impl_code!(u32);

/// One format with its bias and denormal rule: what a tensor's element type says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Codec {
    format: Format,
    bias: u8,
    denormals: Denormals,
}

/// Largest configurable bias (an unsigned 6-bit field).
pub const MAX_BIAS: u8 = 63;

/// Elements per block of the encode kernel (flag counters are per block `u32`s).
const BLOCK: usize = 1024;

impl Codec {
    /// `format` with `bias` (0..=63 for CFloat; bf16 and fp32 take only their fixed 127) and
    /// whitepaper-literal denormals.
    pub fn new(format: Format, bias: u8) -> Result<Codec> {
        if format.is_cfloat() && bias > MAX_BIAS {
            return Err(RuntimeError::new(format!(
                "bias {bias} is out of range for {format}: a CFloat bias is 0..={MAX_BIAS}"
            )));
        }
        if !format.is_cfloat() && bias != format.default_bias() {
            return Err(RuntimeError::new(format!(
                "{format} has the fixed bias {}, not {bias}",
                format.default_bias()
            )));
        }
        Ok(Codec {
            format,
            bias,
            denormals: Denormals::Literal,
        })
    }

    /// The same codec with another denormal rule (it only matters for CFloat formats).
    pub fn with_denormals(self, denormals: Denormals) -> Codec {
        Codec { denormals, ..self }
    }

    pub fn format(&self) -> Format {
        self.format
    }

    pub fn bias(&self) -> u8 {
        self.bias
    }

    pub fn denormals(&self) -> Denormals {
        self.denormals
    }

    /// Largest finite magnitude: `(2 − 2^−M) · 2^((2^E − 1) − bias)` for CFloat.
    pub fn max_finite(&self) -> f32 {
        match self.format {
            Format::Bf16 => half::bf16::MAX.to_f32(),
            Format::Fp32 => f32::MAX,
            f => max_finite(f, self.bias) as f32,
        }
    }

    /// Smallest positive normal value.
    pub fn min_normal(&self) -> f32 {
        match self.format {
            Format::Bf16 | Format::Fp32 => f32::MIN_POSITIVE,
            _ => pow2(1 - self.bias as i32),
        }
    }

    /// Smallest positive denormal value (the denormal step).
    pub fn min_denormal(&self) -> f32 {
        match self.format {
            Format::Bf16 => half::bf16::from_bits(1).to_f32(),
            Format::Fp32 => f32::from_bits(1),
            f => pow2(self.denorm_shift() - self.bias as i32 - f.mantissa_bits() as i32),
        }
    }

    /// The exact value of `code` (bits above the code width are ignored).
    pub fn decode(&self, code: u32) -> f32 {
        let mut out = [0f32];
        match self.format.code_bits() {
            8 => self.decode_into(&[code as u8], &mut out),
            16 => self.decode_into(&[code as u16], &mut out),
            _ => self.decode_into(&[code], &mut out),
        }
        out[0]
    }

    /// The code of `x`, and the flags it raises; `index` is the element's index in its
    /// tensor (it picks the random draw of stochastic rounding).
    pub fn encode(&self, x: f32, rounding: Rounding, index: u64) -> (u32, Flags) {
        let src = [x];
        match self.format.code_bits() {
            8 => {
                let mut dst = [0u8];
                let flags = self.encode_into(&src, &mut dst, rounding, index);
                (dst[0] as u32, flags)
            }
            16 => {
                let mut dst = [0u16];
                let flags = self.encode_into(&src, &mut dst, rounding, index);
                (dst[0] as u32, flags)
            }
            _ => {
                let mut dst = [0u32];
                let flags = self.encode_into(&src, &mut dst, rounding, index);
                (dst[0], flags)
            }
        }
    }

    /// Encodes `src` into `dst` (same length, code type of the format's width); element `i`
    /// has index `i` for stochastic rounding. Returns the flags of the whole call.
    pub fn encode_slice<C: Code>(
        &self,
        src: &[f32],
        dst: &mut [C],
        rounding: Rounding,
    ) -> Result<Flags> {
        self.check_slices::<C>("encode_slice", src.len(), dst.len())?;
        Ok(self.encode_into(src, dst, rounding, 0))
    }

    /// [`Codec::encode_slice`] for the elements `first_index..` of a larger tensor: the codes
    /// equal that part of the whole tensor's (stochastic rounding draws by element index).
    pub fn encode_slice_at<C: Code>(
        &self,
        src: &[f32],
        dst: &mut [C],
        rounding: Rounding,
        first_index: u64,
    ) -> Result<Flags> {
        self.check_slices::<C>("encode_slice_at", src.len(), dst.len())?;
        Ok(self.encode_into(src, dst, rounding, first_index))
    }

    /// [`Codec::encode_slice`] split over up to `threads` scoped threads: the codes and flags
    /// are bit-identical to the single-threaded call.
    pub fn encode_slice_parallel<C: Code>(
        &self,
        src: &[f32],
        dst: &mut [C],
        rounding: Rounding,
        threads: usize,
    ) -> Result<Flags> {
        self.check_slices::<C>("encode_slice_parallel", src.len(), dst.len())?;
        let chunk = src.len().div_ceil(threads.max(1)).div_ceil(BLOCK) * BLOCK;
        if threads <= 1 || chunk >= src.len() {
            return Ok(self.encode_into(src, dst, rounding, 0));
        }
        let flags = std::thread::scope(|scope| {
            let workers: Vec<_> = src
                .chunks(chunk)
                .zip(dst.chunks_mut(chunk))
                .enumerate()
                .map(|(i, (s, d))| {
                    let first = (i * chunk) as u64;
                    scope.spawn(move || self.encode_into(s, d, rounding, first))
                })
                .collect();
            workers
                .into_iter()
                .map(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .fold(Flags::default(), Add::add)
        });
        Ok(flags)
    }

    /// Decodes `src` into `dst` (same length) exactly.
    pub fn decode_slice<C: Code>(&self, src: &[C], dst: &mut [f32]) -> Result<()> {
        self.check_slices::<C>("decode_slice", dst.len(), src.len())?;
        self.decode_into(src, dst);
        Ok(())
    }

    /// Rounds every value of `data` to this format in place (encode, then decode): what the
    /// values become when stored in the format. Returns the flags.
    pub fn quantize_slice(&self, data: &mut [f32], rounding: Rounding) -> Flags {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2.
            return unsafe { self.quantize_slice_avx2(data, rounding) };
        }
        self.quantize_slice_inline(data, rounding)
    }

    /// [`Codec::quantize_slice`] compiled for AVX2 (its decode loop vectorises; the encode
    /// picks its own AVX2 kernel either way). Integer operations and exact conversions only:
    /// the same bits as without.
    ///
    /// # Safety
    /// The CPU must support AVX2.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn quantize_slice_avx2(&self, data: &mut [f32], rounding: Rounding) -> Flags {
        self.quantize_slice_inline(data, rounding)
    }

    #[inline(always)]
    fn quantize_slice_inline(&self, data: &mut [f32], rounding: Rounding) -> Flags {
        let mut flags = Flags::default();
        let mut codes = [0u32; BLOCK];
        for (b, block) in data.chunks_mut(BLOCK).enumerate() {
            let codes = &mut codes[..block.len()];
            flags += self.encode_into(block, codes, rounding, (b * BLOCK) as u64);
            self.decode_into(codes, block);
        }
        flags
    }

    fn check_slices<C: Code>(&self, what: &str, values: usize, codes: usize) -> Result<()> {
        if C::BITS != self.format.code_bits() {
            return Err(RuntimeError::new(format!(
                "{what}: {} codes are {}-bit, the code slice holds {}-bit integers",
                self.format,
                self.format.code_bits(),
                C::BITS
            )));
        }
        if values != codes {
            return Err(RuntimeError::new(format!(
                "{what}: {values} value(s) but {codes} code(s); the slices must have equal lengths"
            )));
        }
        Ok(())
    }

    /// 1 for IEEE denormals (`0.m · 2^(1−bias)`), 0 for literal ones.
    fn denorm_shift(&self) -> i32 {
        match self.denormals {
            Denormals::Literal => 0,
            Denormals::Ieee => 1,
        }
    }

    fn encode_into<C: Code>(&self, src: &[f32], dst: &mut [C], r: Rounding, first: u64) -> Flags {
        match self.format {
            Format::Fp32 => {
                for (d, s) in dst.iter_mut().zip(src) {
                    *d = C::from_u32(s.to_bits());
                }
                Flags::default()
            }
            Format::Bf16 => encode_blocks(&Bf16Kernel, src, dst, r, first),
            _ => encode_blocks(&CFloatKernel::new(self), src, dst, r, first),
        }
    }

    #[inline(always)]
    fn decode_into<C: Code>(&self, src: &[C], dst: &mut [f32]) {
        match self.format {
            Format::Fp32 => {
                for (d, s) in dst.iter_mut().zip(src) {
                    *d = f32::from_bits(s.to_u32());
                }
            }
            Format::Bf16 => {
                for (d, s) in dst.iter_mut().zip(src) {
                    *d = half::bf16::from_bits(s.to_u32() as u16).to_f32();
                }
            }
            f => {
                let m = f.mantissa_bits();
                let e_mask = (1u32 << f.exponent_bits()) - 1;
                let m_mask = (1u32 << m) - 1;
                let sign_shift = if f.is_signed() {
                    m + f.exponent_bits()
                } else {
                    31
                };
                let sign_mask = if f.is_signed() { 1 } else { 0 };
                let rebias = 127 - self.bias as u32;
                let step = self.min_denormal();
                for (d, s) in dst.iter_mut().zip(src) {
                    let c = s.to_u32();
                    let e = (c >> m) & e_mask;
                    let man = c & m_mask;
                    let sign = ((c >> sign_shift) & sign_mask) << 31;
                    let normal = sign | ((e + rebias) << 23) | (man << (23 - m));
                    let denormal = sign | (man as f32 * step).to_bits();
                    *d = f32::from_bits(if e == 0 { denormal } else { normal });
                }
            }
        }
    }
}

/// D7: the largest bias whose largest finite value is ≥ `amax · margin` (bias 0 when none
/// is); an `amax` of zero takes the format's default bias. bf16 and fp32 return 127.
/// `amax` is taken by magnitude; NaN, or a margin that is not finite and positive, is an error.
pub fn choose_bias(format: Format, amax: f32, margin: f32) -> Result<u8> {
    if !(margin.is_finite() && margin > 0.0) {
        return Err(RuntimeError::new(format!(
            "bias margin must be a finite positive number, got {margin}"
        )));
    }
    if amax.is_nan() {
        return Err(RuntimeError::new(
            "cannot choose a bias from a NaN amax".to_owned(),
        ));
    }
    let target = amax.abs() as f64 * margin as f64;
    if !format.is_cfloat() || target == 0.0 {
        return Ok(format.default_bias());
    }
    Ok((0..=MAX_BIAS)
        .rev()
        .find(|&b| max_finite(format, b) >= target)
        .unwrap_or(0))
}

/// Largest magnitude in `data`, NaNs ignored (0 for an empty or all-NaN slice).
pub fn amax(data: &[f32]) -> f32 {
    // Eight running maxima (vectorised), then theirs: a NaN never wins a comparison and the
    // maximum of the rest does not depend on the order, so this is the plain fold's value.
    let keep = |m: f32, x: f32| if x.abs() > m { x.abs() } else { m };
    let chunks = data.chunks_exact(8);
    let tail = chunks.remainder().iter().fold(0f32, |m, &x| keep(m, x));
    let lanes = chunks.fold([0f32; 8], |mut lanes, c| {
        for (l, &x) in lanes.iter_mut().zip(c) {
            *l = keep(*l, x);
        }
        lanes
    });
    lanes.iter().fold(tail, |m, &x| keep(m, x))
}

/// `(2 − 2^−M) · 2^((2^E − 1) − bias)`, exact in f64 (and f32).
fn max_finite(f: Format, bias: u8) -> f64 {
    let m = f.mantissa_bits() as i32;
    let top = (1i32 << f.exponent_bits()) - 1 - bias as i32;
    (2.0 - 2f64.powi(-m)) * 2f64.powi(top)
}

/// `2^e` for `e` in the normal f32 range.
fn pow2(e: i32) -> f32 {
    debug_assert!((-126..=127).contains(&e));
    f32::from_bits(((e + 127) as u32) << 23)
}

// ---------------------------------------------------------------------------------------
// Encode kernels: blocks of `BLOCK` elements, branch-free per element so that LLVM
// vectorises them, compiled a second time for AVX2 and picked at run time. They use integer
// operations and single f32 additions only, so the results are the same either way.

/// One block of elements: `words[i]` is element `i`'s random word (stochastic rounding).
trait BlockKernel: Sync {
    fn encode_block<C: Code, const SR: bool>(
        &self,
        src: &[f32],
        dst: &mut [C],
        words: &[u32],
    ) -> Flags;
}

/// Splits `src` into blocks, draws the random words of each (element indices `first..`)
/// and runs the kernel on it.
fn encode_blocks<K: BlockKernel, C: Code>(
    kernel: &K,
    src: &[f32],
    dst: &mut [C],
    rounding: Rounding,
    first: u64,
) -> Flags {
    match rounding {
        Rounding::NearestEven => encode_blocks_dispatch::<K, C, false>(kernel, src, dst, 0, first),
        Rounding::Stochastic { seed, stream } => {
            let key = stream_key(seed, stream);
            encode_blocks_dispatch::<K, C, true>(kernel, src, dst, key, first)
        }
    }
}

fn encode_blocks_dispatch<K: BlockKernel, C: Code, const SR: bool>(
    kernel: &K,
    src: &[f32],
    dst: &mut [C],
    key: u64,
    first: u64,
) -> Flags {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2.
        return unsafe { encode_blocks_avx2::<K, C, SR>(kernel, src, dst, key, first) };
    }
    encode_blocks_inline::<K, C, SR>(kernel, src, dst, key, first)
}

/// # Safety
/// The CPU must support AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn encode_blocks_avx2<K: BlockKernel, C: Code, const SR: bool>(
    kernel: &K,
    src: &[f32],
    dst: &mut [C],
    key: u64,
    first: u64,
) -> Flags {
    encode_blocks_inline::<K, C, SR>(kernel, src, dst, key, first)
}

#[inline(always)]
fn encode_blocks_inline<K: BlockKernel, C: Code, const SR: bool>(
    kernel: &K,
    src: &[f32],
    dst: &mut [C],
    key: u64,
    first: u64,
) -> Flags {
    let mut flags = Flags::default();
    let mut words = [0u32; BLOCK];
    for (b, (src, dst)) in src.chunks(BLOCK).zip(dst.chunks_mut(BLOCK)).enumerate() {
        let words = &mut words[..src.len()];
        if SR {
            fill_random_words(key, first + (b * BLOCK) as u64, words);
        }
        flags += kernel.encode_block::<C, SR>(src, dst, words);
    }
    flags
}

/// Per-element flag counters of one block.
#[derive(Default)]
struct BlockFlags {
    invalid: u32,
    denormal: u32,
    overflow: u32,
    underflow: u32,
}

impl From<BlockFlags> for Flags {
    fn from(b: BlockFlags) -> Flags {
        Flags {
            invalid: b.invalid as u64,
            denormal: b.denormal as u64,
            overflow: b.overflow as u64,
            underflow: b.underflow as u64,
        }
    }
}

/// The random stream: a 64-bit key mixed from `(seed, stream)` by SplitMix64's output
/// function; element `i`'s word is a keyed 32-bit hash of `i` (two rounds of Wellons'
/// low-bias integer hash with keys drawn from the stream key and `i >> 32`), which
/// vectorises, unlike 64-bit multiplies.
fn stream_key(seed: u64, stream: u64) -> u64 {
    mix64(mix64(seed ^ 0x6a09_e667_f3bc_c909) ^ stream.rotate_left(29))
}

/// SplitMix64's output function (Stafford's mix 13).
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The two 32-bit round keys for elements `hi << 32 ..= (hi << 32) + u32::MAX`.
fn round_keys(key: u64, hi: u32) -> (u32, u32) {
    let k = mix64(key ^ (hi as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    (k as u32, (k >> 32) as u32)
}

/// Wellons' `lowbias32` (the improved constants): a bijective 32-bit hash.
#[inline(always)]
fn hash32(mut x: u32) -> u32 {
    x ^= x >> 16;
    x = x.wrapping_mul(0x21f0_aaad);
    x ^= x >> 15;
    x = x.wrapping_mul(0x735a_2d97);
    x ^ (x >> 15)
}

/// `words[i]` = the random word of element `first + i` (a block never spans more than two
/// values of `index >> 32`).
#[inline(always)]
fn fill_random_words(key: u64, first: u64, words: &mut [u32]) {
    let hi0 = (first >> 32) as u32;
    let lo0 = first as u32;
    let (a1, a2) = round_keys(key, hi0);
    let (b1, b2) = round_keys(key, hi0.wrapping_add(1));
    for (i, w) in words.iter_mut().enumerate() {
        let lo = lo0.wrapping_add(i as u32);
        let (k1, k2) = if lo >= lo0 { (a1, a2) } else { (b1, b2) };
        *w = hash32(hash32(lo ^ k1) ^ k2);
    }
}

/// The CFloat kernel's per-codec constants (f32 bit patterns are of magnitudes).
struct CFloatKernel {
    /// Mantissa bits M.
    m: u32,
    /// Dropped bits of a normal result: 23 − M.
    s: u32,
    /// Subtracted from f32 bits to rebias the exponent: (127 − bias) << 23.
    rebias: u32,
    /// Bits of the smallest normal 2^(1−bias): at or above it the normal path applies.
    normal_min: u32,
    /// K = 2^23 · step (the denormal step): `x + K` rounds x to the step (RNE) in the FP unit.
    k: f32,
    k_bits: u32,
    /// 150 + log2(step): minus an input's exponent field, the bits of its 24-bit significand
    /// that fall below the step.
    step_drop: u32,
    /// Largest magnitude code.
    max_mag: u32,
    /// Where the sign bit goes; whether there is one.
    sign_shift: u32,
    signed: bool,
    /// Literal denormals: magnitudes strictly inside (gap_lo, gap_hi) take the exact path.
    gap_lo: u32,
    gap_hi: u32,
    bias: i32,
}

impl CFloatKernel {
    fn new(c: &Codec) -> CFloatKernel {
        let f = c.format;
        let m = f.mantissa_bits();
        let e = f.exponent_bits();
        let b = c.bias as i32;
        let step_exp = c.denorm_shift() - b - m as i32;
        let k = pow2(23 + step_exp);
        let (gap_lo, gap_hi) = match c.denormals {
            Denormals::Literal => {
                let largest_denormal = ((1u32 << m) - 1) as f32 * pow2(step_exp);
                (largest_denormal.to_bits(), pow2(1 - b).to_bits())
            }
            Denormals::Ieee => (u32::MAX, 0),
        };
        CFloatKernel {
            m,
            s: 23 - m,
            rebias: (127 - b as u32) << 23,
            normal_min: pow2(1 - b).to_bits(),
            k,
            k_bits: k.to_bits(),
            step_drop: (150 + step_exp) as u32,
            max_mag: (1u32 << (e + m)) - 1,
            sign_shift: e + m,
            signed: f.is_signed(),
            gap_lo,
            gap_hi,
            bias: b,
        }
    }

    /// The magnitude code of `a`, inside the literal gap `(D, N)`: the nearer of D (code
    /// 2^M − 1) and N (code 2^M), a tie to N; with a random word `r`, N with probability
    /// `(a − D)/(N − D)`.
    #[cold]
    fn gap_magnitude(&self, a: f32, r: Option<u32>) -> u32 {
        let m = self.m as i32;
        let lo = ((1u64 << m) - 1) as f64 * 2f64.powi(-self.bias - m);
        let hi = 2f64.powi(1 - self.bias);
        let a = a as f64;
        // Exact in f64: a, D and N are multiples of 2^(−bias−24) below 2^(1−bias).
        let up = match r {
            None => a - lo >= hi - a,
            Some(r) => {
                let units = 2f64.powi(self.bias + 24);
                let above = ((a - lo) * units) as u64;
                let width = ((hi - lo) * units) as u64;
                (r as u64) * width < above << 32
            }
        };
        if up {
            1 << self.m
        } else {
            (1 << self.m) - 1
        }
    }
}

impl BlockKernel for CFloatKernel {
    #[inline(always)]
    fn encode_block<C: Code, const SR: bool>(
        &self,
        src: &[f32],
        dst: &mut [C],
        words: &[u32],
    ) -> Flags {
        let k = self;
        let mut f = BlockFlags::default();
        let mut gaps = 0u32;
        for ((x, out), &r) in src.iter().zip(dst.iter_mut()).zip(words) {
            let bits = x.to_bits();
            let sign = bits >> 31;
            let abs = bits & 0x7fff_ffff;

            // Normal result: rebias the exponent, drop s mantissa bits with rounding (D3:
            // stochastic rounding adds the top s bits of r).
            let reb = abs.wrapping_sub(k.rebias);
            let add = if SR {
                r >> (32 - k.s)
            } else {
                ((1 << (k.s - 1)) - 1) + ((reb >> k.s) & 1)
            };
            let normal = reb.wrapping_add(add) >> k.s;
            // Denormal result: a multiple of the step.
            let denormal = if SR {
                // a = sig · 2^−drop steps: keep sig >> drop, and round up when the dropped
                // bits (a 32-bit fraction, truncated past 32 bits) plus r carry.
                let ef = abs >> 23;
                let sig = (abs & 0x7f_ffff) | (((ef != 0) as u32) << 23);
                let drop = k.step_drop.wrapping_sub(ef.max(1));
                let whole = if drop < 32 { sig >> drop } else { 0 };
                let dropped = if drop == 0 {
                    0
                } else if drop <= 32 {
                    sig << (32 - drop)
                } else if drop < 64 {
                    sig >> (drop - 32)
                } else {
                    0
                };
                whole + dropped.overflowing_add(r).1 as u32
            } else {
                (f32::from_bits(abs) + k.k).to_bits().wrapping_sub(k.k_bits)
            };
            let mag = if abs >= k.normal_min {
                normal
            } else {
                denormal
            };

            let nan = abs > 0x7f80_0000;
            let invalid = nan | (!k.signed & (sign != 0) & (abs != 0));
            let gap = (abs > k.gap_lo) & (abs < k.gap_hi) & !invalid;
            let over = mag > k.max_mag;
            let mag = if invalid { 0 } else { mag.min(k.max_mag) };
            let code = if k.signed & !nan {
                (sign << k.sign_shift) | mag
            } else {
                mag
            };
            *out = C::from_u32(code);

            let counted = !invalid & !gap;
            f.invalid += invalid as u32;
            f.overflow += (counted & over) as u32;
            f.underflow += (counted & (abs != 0) & (mag == 0)) as u32;
            f.denormal += (counted & (mag != 0) & (mag < (1 << k.m))) as u32;
            gaps += gap as u32;
        }
        if gaps != 0 {
            for (i, (x, out)) in src.iter().zip(dst.iter_mut()).enumerate() {
                let bits = x.to_bits();
                let abs = bits & 0x7fff_ffff;
                let negative_to_unsigned = !k.signed && bits >> 31 != 0;
                if abs > k.gap_lo && abs < k.gap_hi && !negative_to_unsigned {
                    let mag = k.gap_magnitude(f32::from_bits(abs), SR.then_some(words[i]));
                    let sign = if k.signed { bits >> 31 } else { 0 };
                    *out = C::from_u32((sign << k.sign_shift) | mag);
                    f.denormal += (mag < (1 << k.m)) as u32;
                }
            }
        }
        f.into()
    }
}

/// f32 → bf16: round-to-nearest-even exactly as `half::bf16::from_f32` (the tests compare),
/// or D3's stochastic rounding of the low 16 bits; NaN becomes a quiet NaN, ±Inf stays.
struct Bf16Kernel;

impl BlockKernel for Bf16Kernel {
    #[inline(always)]
    fn encode_block<C: Code, const SR: bool>(
        &self,
        src: &[f32],
        dst: &mut [C],
        words: &[u32],
    ) -> Flags {
        let mut f = BlockFlags::default();
        for ((x, out), &r) in src.iter().zip(dst.iter_mut()).zip(words) {
            let bits = x.to_bits();
            let abs = bits & 0x7fff_ffff;
            let finite = abs < 0x7f80_0000;
            let add = if SR {
                if finite {
                    r >> 16
                } else {
                    0
                }
            } else {
                0x7fff + ((bits >> 16) & 1)
            };
            // Carries run into the exponent; at most up to Inf (0x7f80).
            let rounded = (abs.wrapping_add(add) >> 16).min(0x7f80);
            let mag = if abs > 0x7f80_0000 {
                (abs >> 16) | 0x40
            } else {
                rounded
            };
            *out = C::from_u32(((bits >> 31) << 15) | mag);
            f.overflow += (finite & (mag == 0x7f80)) as u32;
            f.underflow += (finite & (abs != 0) & (mag == 0)) as u32;
            f.denormal += (finite & (mag != 0) & (mag < 0x80)) as u32;
        }
        f.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The AVX2 build of the kernels gives the same codes and flags as the portable one
    /// (the integration tests only see the one the CPU picks).
    #[test]
    fn kernels_agree_with_and_without_avx2() {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            let mut state = 0x1234_5678_9abc_def0u64;
            let inputs: Vec<f32> = (0..20_000)
                .map(|i| {
                    state = mix64(state);
                    match i % 4 {
                        0 => f32::from_bits(state as u32),
                        _ => f32::from_bits((state as u32 & 0x87ff_ffff) | 0x3000_0000),
                    }
                })
                .collect();
            for format in Format::CFLOAT {
                for denormals in [Denormals::Literal, Denormals::Ieee] {
                    let c = Codec::new(format, 40).unwrap().with_denormals(denormals);
                    let k = CFloatKernel::new(&c);
                    for (sr, key) in [(false, 0), (true, stream_key(3, 4))] {
                        let mut a = vec![0u32; inputs.len()];
                        let mut b = vec![0u32; inputs.len()];
                        let (fa, fb) = if sr {
                            // SAFETY: the CPU supports AVX2.
                            let fa = unsafe {
                                encode_blocks_avx2::<_, _, true>(&k, &inputs, &mut a, key, 5)
                            };
                            (
                                fa,
                                encode_blocks_inline::<_, _, true>(&k, &inputs, &mut b, key, 5),
                            )
                        } else {
                            // SAFETY: the CPU supports AVX2.
                            let fa = unsafe {
                                encode_blocks_avx2::<_, _, false>(&k, &inputs, &mut a, key, 5)
                            };
                            (
                                fa,
                                encode_blocks_inline::<_, _, false>(&k, &inputs, &mut b, key, 5),
                            )
                        };
                        assert_eq!((fa, &a), (fb, &b), "{format} {denormals:?} sr={sr}");
                    }
                }
            }
        }
    }
}
