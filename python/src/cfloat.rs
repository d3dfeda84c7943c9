//! `torch_dojo.cfloat`'s native half: torch tensors to CFloat codes and back through
//! `dojo_runtime::cfloat`, without Python lists. Inputs are read in place as contiguous CPU
//! tensors (tch); outputs are allocated as tch tensors and written directly. Every bad
//! argument raises `InvalidInputError` with the reason; the Python wrapper
//! (`python/torch_dojo/cfloat.py`) adds defaults, dataclasses and warnings.

use std::str::FromStr;

use dojo_runtime::cfloat::{self, Code, Codec, Denormals, Flags, Format, Rounding};
use dojo_runtime::RuntimeError;
use pyo3::prelude::*;
use tch::{Device, Kind, Tensor};

use crate::errors::{guarded, InvalidInputError};

/// Elements from which a conversion is split over threads.
const PARALLEL_MIN: usize = 1 << 16;

/// `(invalid, denormal, overflow, underflow)` counts.
type FlagCounts = (u64, u64, u64, u64);

/// Encodes a floating-point tensor. Returns the codes (uint8 for cf8, int16 for cf16/bf16,
/// int32 for fp32; the input's shape), the bias used (D7 from the tensor's amax when `bias`
/// is None) and the flags.
#[pyfunction]
#[pyo3(signature = (tensor, format, bias, rounding, seed, stream, denormal))]
#[allow(clippy::too_many_arguments)]
pub fn cfloat_encode(
    py: Python<'_>,
    tensor: &Bound<'_, PyAny>,
    format: &str,
    bias: Option<i64>,
    rounding: &str,
    seed: u64,
    stream: u64,
    denormal: &str,
) -> PyResult<(Py<PyAny>, u8, FlagCounts)> {
    guarded(|| {
        let format = invalid(Format::from_str(format))?;
        let rounding = match rounding {
            "nearest" => Rounding::NearestEven,
            "stochastic" => Rounding::Stochastic { seed, stream },
            other => {
                return Err(InvalidInputError::new_err(format!(
                    "unknown rounding {other:?}; expected \"nearest\" or \"stochastic\""
                )))
            }
        };
        let denormals = invalid(Denormals::from_str(denormal))?;
        let input = unpack(tensor, "to_cfloat")?;
        if !matches!(
            input.kind(),
            Kind::Float | Kind::Double | Kind::Half | Kind::BFloat16
        ) {
            return Err(InvalidInputError::new_err(format!(
                "to_cfloat needs a floating-point tensor, got {}",
                dtype_name(input.kind())
            )));
        }
        let input = input
            .f_to_kind(Kind::Float)
            .and_then(|t| t.f_contiguous())
            .map_err(|e| InvalidInputError::new_err(format!("to_cfloat: {e}")))?;
        // SAFETY: a contiguous CPU f32 tensor that outlives the slice.
        let data = unsafe { slice::<f32>(&input) };
        let bias = match bias {
            Some(b) => checked_bias(b)?,
            None => invalid(cfloat::choose_bias(format, cfloat::amax(data), 1.0))?,
        };
        let codec = invalid(Codec::new(format, bias))?.with_denormals(denormals);
        let (codes, flags) = match format.code_bits() {
            8 => encode_to::<u8>(py, &codec, data, &input, Kind::Uint8, rounding)?,
            16 => encode_to::<u16>(py, &codec, data, &input, Kind::Int16, rounding)?,
            _ => encode_to::<u32>(py, &codec, data, &input, Kind::Int, rounding)?,
        };
        Ok((wrap(py, codes)?, bias, counts(flags)))
    })
}

/// Decodes a code tensor (uint8 for cf8, int16 for cf16/bf16, int32 for fp32) to f32.
#[pyfunction]
pub fn cfloat_decode(
    py: Python<'_>,
    codes: &Bound<'_, PyAny>,
    format: &str,
    bias: i64,
    denormal: &str,
) -> PyResult<Py<PyAny>> {
    guarded(|| {
        let format = invalid(Format::from_str(format))?;
        let denormals = invalid(Denormals::from_str(denormal))?;
        let codec = invalid(Codec::new(format, checked_bias(bias)?))?.with_denormals(denormals);
        let codes = unpack(codes, "from_cfloat")?;
        let (want, width) = match format.code_bits() {
            8 => (Kind::Uint8, "torch.uint8"),
            16 => (Kind::Int16, "torch.int16"),
            _ => (Kind::Int, "torch.int32"),
        };
        if codes.kind() != want {
            return Err(InvalidInputError::new_err(format!(
                "from_cfloat: {format} codes must be a {width} tensor, got {}",
                dtype_name(codes.kind())
            )));
        }
        let codes = codes
            .f_contiguous()
            .map_err(|e| InvalidInputError::new_err(format!("from_cfloat: {e}")))?;
        let out = empty_like(&codes, Kind::Float)?;
        // SAFETY: `codes` is contiguous on the CPU with elements of the format's width and
        // `out` is a fresh contiguous f32 tensor of the same size; both outlive the slices.
        let result = unsafe {
            let dst = slice_mut::<f32>(&out);
            match format.code_bits() {
                8 => {
                    let src = slice::<u8>(&codes);
                    py.detach(|| codec.decode_slice(src, dst))
                }
                16 => {
                    let src = slice::<u16>(&codes);
                    py.detach(|| codec.decode_slice(src, dst))
                }
                _ => {
                    let src = slice::<u32>(&codes);
                    py.detach(|| codec.decode_slice(src, dst))
                }
            }
        };
        invalid(result)?;
        wrap(py, out)
    })
}

/// D7: the largest bias whose largest finite value is ≥ amax(tensor) · margin.
#[pyfunction]
pub fn cfloat_choose_bias(tensor: &Bound<'_, PyAny>, format: &str, margin: f64) -> PyResult<u8> {
    guarded(|| {
        let format = invalid(Format::from_str(format))?;
        let t = unpack(tensor, "choose_bias")?;
        if !matches!(
            t.kind(),
            Kind::Float | Kind::Double | Kind::Half | Kind::BFloat16
        ) {
            return Err(InvalidInputError::new_err(format!(
                "choose_bias needs a floating-point tensor, got {}",
                dtype_name(t.kind())
            )));
        }
        let t = t
            .f_to_kind(Kind::Float)
            .and_then(|t| t.f_contiguous())
            .map_err(|e| InvalidInputError::new_err(format!("choose_bias: {e}")))?;
        // SAFETY: a contiguous CPU f32 tensor that outlives the slice.
        let amax = cfloat::amax(unsafe { slice::<f32>(&t) });
        invalid(cfloat::choose_bias(format, amax, margin as f32))
    })
}

/// `(largest finite, smallest normal, smallest denormal)` of a format and bias.
#[pyfunction]
pub fn cfloat_limits(format: &str, bias: i64, denormal: &str) -> PyResult<(f32, f32, f32)> {
    guarded(|| {
        let format = invalid(Format::from_str(format))?;
        let denormals = invalid(Denormals::from_str(denormal))?;
        let c = invalid(Codec::new(format, checked_bias(bias)?))?.with_denormals(denormals);
        Ok((c.max_finite(), c.min_normal(), c.min_denormal()))
    })
}

fn encode_to<C: Code>(
    py: Python<'_>,
    codec: &Codec,
    data: &[f32],
    like: &Tensor,
    kind: Kind,
    rounding: Rounding,
) -> PyResult<(Tensor, Flags)> {
    let out = empty_like(like, kind)?;
    let threads = if data.len() >= PARALLEL_MIN {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        1
    };
    // SAFETY: `out` is a fresh contiguous CPU tensor of `data.len()` elements of C's width.
    let dst = unsafe { slice_mut::<C>(&out) };
    let flags = py.detach(|| codec.encode_slice_parallel(data, dst, rounding, threads));
    Ok((out, invalid(flags)?))
}

fn checked_bias(bias: i64) -> PyResult<u8> {
    u8::try_from(bias).map_err(|_| {
        InvalidInputError::new_err(format!(
            "bias {bias} is out of range: a CFloat bias is 0..={} (bf16 and fp32 take 127)",
            cfloat::MAX_BIAS
        ))
    })
}

fn invalid<T>(r: Result<T, RuntimeError>) -> PyResult<T> {
    r.map_err(|e| InvalidInputError::new_err(e.to_string()))
}

fn counts(f: Flags) -> FlagCounts {
    (f.invalid, f.denormal, f.overflow, f.underflow)
}

/// A Python object that must be a torch.Tensor, detached and on the CPU.
fn unpack(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<Tensor> {
    // SAFETY: `obj` is a live Python object for the duration of the call.
    let unpacked = unsafe { Tensor::pyobject_unpack(obj.as_ptr() as *mut tch::python::CPyObject) };
    let tensor = match unpacked {
        Ok(Some(t)) => t,
        Ok(None) => {
            let got = obj
                .get_type()
                .name()
                .map(|n| n.to_string())
                .unwrap_or_else(|_| "an unknown type".to_owned());
            return Err(InvalidInputError::new_err(format!(
                "{what} needs a torch.Tensor, got {got}"
            )));
        }
        Err(e) => return Err(InvalidInputError::new_err(format!("{what}: {e}"))),
    };
    tensor
        .f_detach()
        .and_then(|t| t.f_to_device(Device::Cpu))
        .map_err(|e| InvalidInputError::new_err(format!("{what}: cannot read the tensor: {e}")))
}

fn empty_like(like: &Tensor, kind: Kind) -> PyResult<Tensor> {
    Tensor::f_empty(like.size(), (kind, Device::Cpu))
        .map_err(|e| InvalidInputError::new_err(format!("cannot allocate the result: {e}")))
}

fn wrap(py: Python<'_>, t: Tensor) -> PyResult<Py<PyAny>> {
    let ptr = t
        .pyobject_wrap()
        .map_err(|e| InvalidInputError::new_err(e.to_string()))?;
    // SAFETY: `pyobject_wrap` returns a new reference (or null with a pending exception).
    unsafe { Bound::from_owned_ptr_or_err(py, ptr as *mut pyo3::ffi::PyObject) }.map(Bound::unbind)
}

/// The elements of a contiguous CPU tensor whose element width is `T`'s.
///
/// # Safety
/// `t` must be contiguous, on the CPU, with elements of `T`'s size, and outlive the slice.
unsafe fn slice<T>(t: &Tensor) -> &[T] {
    let n = t.numel();
    if n == 0 {
        return &[];
    }
    // SAFETY: per the function's contract.
    unsafe { std::slice::from_raw_parts(t.data_ptr() as *const T, n) }
}

/// The elements of a fresh (unaliased) contiguous CPU tensor, writable.
///
/// # Safety
/// As [`slice`], and nothing else reads or writes the tensor while the slice lives.
#[allow(clippy::mut_from_ref)]
unsafe fn slice_mut<T>(t: &Tensor) -> &mut [T] {
    let n = t.numel();
    if n == 0 {
        return &mut [];
    }
    // SAFETY: per the function's contract.
    unsafe { std::slice::from_raw_parts_mut(t.data_ptr() as *mut T, n) }
}

fn dtype_name(kind: Kind) -> String {
    let name = match kind {
        Kind::Uint8 => "uint8",
        Kind::Int8 => "int8",
        Kind::Int16 => "int16",
        Kind::Int => "int32",
        Kind::Int64 => "int64",
        Kind::Half => "float16",
        Kind::Float => "float32",
        Kind::Double => "float64",
        Kind::Bool => "bool",
        Kind::BFloat16 => "bfloat16",
        Kind::ComplexFloat => "complex64",
        Kind::ComplexDouble => "complex128",
        other => return format!("{other:?}"),
    };
    format!("torch.{name}")
}
