//! Tensors across the Python boundary as tch tensors (tch's `python-extension` feature):
//! a torch tensor is read in place as contiguous f32 on the CPU; an output is an empty f32
//! tensor of its shape that the driver's `Vec<f32>` is copied into, then cast to the graph's
//! dtype (a second copy, for the few outputs that are not f32).

use dojo_passes::driver::HostTensor;
use pyo3::prelude::*;
use tch::{Device, Kind, Tensor};

/// A torch tensor as contiguous f32 on the CPU (shares storage with the caller's tensor when
/// it already is one), with its shape.
pub struct HostF32 {
    tensor: Tensor,
    pub shape: Vec<usize>,
}

impl HostF32 {
    pub fn data(&self) -> &[f32] {
        let numel = self.tensor.numel();
        if numel == 0 {
            return &[];
        }
        // SAFETY: `tensor` is a contiguous CPU f32 tensor with `numel` elements that lives as
        // long as `self`.
        unsafe { std::slice::from_raw_parts(self.tensor.data_ptr() as *const f32, numel) }
    }
}

/// Reads a Python object that must be a `torch.Tensor`.
pub fn to_host_f32(obj: &Bound<'_, PyAny>) -> Result<HostF32, String> {
    // SAFETY: `obj` is a live Python object for the duration of the call.
    let unpacked = unsafe { Tensor::pyobject_unpack(obj.as_ptr() as *mut tch::python::CPyObject) };
    let tensor = match unpacked {
        Ok(Some(t)) => t,
        Ok(None) => return Err(format!("expected a torch.Tensor, got {}", type_name(obj))),
        Err(e) => return Err(e.to_string()),
    };
    let tensor = tensor
        .f_detach()
        .and_then(|t| t.f_to_device(Device::Cpu))
        .and_then(|t| t.f_to_kind(Kind::Float))
        .and_then(|t| t.f_contiguous())
        .map_err(|e| format!("cannot read it as contiguous f32 on the CPU: {e}"))?;
    let shape = tensor.size().into_iter().map(|d| d as usize).collect();
    Ok(HostF32 { tensor, shape })
}

/// Builds a torch tensor of the output's shape and dtype.
pub fn from_host(py: Python<'_>, out: &HostTensor) -> Result<Py<PyAny>, String> {
    let kind = match out.dtype.as_str() {
        "f32" => Kind::Float,
        "bool" => Kind::Bool,
        "i64" => Kind::Int64,
        "i32" => Kind::Int,
        "f16" => Kind::Half,
        "bf16" => Kind::BFloat16,
        other => return Err(format!("unknown dtype {other:?}")),
    };
    let numel: usize = out.shape.iter().product();
    if numel != out.data.len() {
        return Err(format!(
            "shape {:?} needs {numel} values, the device returned {}",
            out.shape,
            out.data.len()
        ));
    }
    let shape: Vec<i64> = out.shape.iter().map(|&d| d as i64).collect();
    // `Tensor::from_slice` zero-fills a new tensor before copying into it (and the fill of a
    // large one starts torch's OpenMP workers, which then spin on a core the next graph's
    // simulation wants): an empty tensor takes the one copy instead.
    let tensor = Tensor::f_empty(shape.as_slice(), (Kind::Float, Device::Cpu))
        .map(|t| {
            if numel > 0 {
                // SAFETY: `t` is a new contiguous CPU f32 tensor of `numel` elements, and
                // `out.data` holds `numel` values (checked above); they do not overlap.
                unsafe { std::ptr::copy_nonoverlapping(out.data.as_ptr(), t.data_ptr() as *mut f32, numel) };
            }
            t
        })
        .and_then(|t| {
            if kind == Kind::Float {
                Ok(t)
            } else {
                t.f_to_kind(kind)
            }
        })
        .map_err(|e| e.to_string())?;
    let ptr = tensor.pyobject_wrap().map_err(|e| e.to_string())?;
    // SAFETY: `pyobject_wrap` returns a new reference (or null with a pending exception).
    unsafe { Bound::from_owned_ptr_or_err(py, ptr as *mut pyo3::ffi::PyObject) }
        .map(Bound::unbind)
        .map_err(|e| e.to_string())
}

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "an unknown type".to_owned())
}
