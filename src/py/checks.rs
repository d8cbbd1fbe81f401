//! Read-only checks over whole lists of arrays: finiteness and memory disjointness.

use super::call::DETACH_FROM;
use super::prepare::{self, Names};
use crate::error::Error;
use crate::kernels::{self, Real};
use numpy::Element;
use pyo3::prelude::*;

/// True if every element of every array is finite (LossScaleOptimizer's check). Arrays of
/// other real dtypes are converted to float64 first.
#[pyfunction]
pub fn all_finite<'py>(py: Python<'py>, arrays: &Bound<'py, PyAny>) -> PyResult<bool> {
    use numpy::{PyArrayDyn, PyArrayMethods};
    let items = prepare::items(arrays, "arrays")?;
    let names = Names(None);
    for (i, obj) in items.iter().enumerate() {
        let ok = if let Ok(a) = obj.cast::<PyArrayDyn<f32>>() {
            finite_array(
                py,
                &a.try_readonly()
                    .map_err(|e| Error::value_error(e.to_string()))?,
            )
        } else {
            let a = prepare::gradient_array::<f64>(py, obj, &names, i)?;
            let ro = a
                .try_readonly()
                .map_err(|e| Error::value_error(e.to_string()))?;
            finite_array(py, &ro)
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

fn finite_array<T: Real + Element>(py: Python<'_>, a: &numpy::PyReadonlyArrayDyn<'_, T>) -> bool {
    use numpy::{PyArrayMethods, PyUntypedArrayMethods};
    if let Ok(s) = a.as_slice() {
        if s.len() >= DETACH_FROM {
            let s = SendSlice(s);
            return py.detach(move || kernels::reduce::all_finite(s.0));
        }
        return kernels::reduce::all_finite(s);
    }
    // Strided: walk it in blocks of the logical order. A broadcast axis (stride 0) repeats the
    // same elements, so it is walked once: `numpy.broadcast_to(x, huge)` costs what x costs.
    let size = std::mem::size_of::<T>() as isize;
    let (shape, strides): (Vec<usize>, Vec<isize>) = a
        .shape()
        .iter()
        .zip(a.strides())
        .map(|(&n, &s)| if s == 0 { (n.min(1), 0) } else { (n, s / size) })
        .unzip();
    let ptr = a.data();
    let len: usize = shape.iter().product();
    let mut buf = [T::ZERO; kernels::driver::BLOCK];
    let mut start = 0;
    while start < len {
        let n = kernels::driver::BLOCK.min(len - start);
        kernels::layout::for_each_offset(&shape, &strides, start, n, |i, off| {
            // SAFETY: offsets derived from the array's own shape and strides; read only.
            buf[i] = unsafe { *ptr.offset(off) };
        });
        if !kernels::reduce::all_finite(&buf[..n]) {
            return false;
        }
        start += n;
    }
    true
}

/// A borrowed slice handed to a closure that runs without the GIL.
struct SendSlice<'a, T>(&'a [T]);
// SAFETY: the slice is only read, and the NumPy borrow guard that protects it outlives the
// closure (the caller holds it across `py.detach`).
unsafe impl<T> Send for SendSlice<'_, T> {}

/// Refuses any memory overlap between an array of `readonly` and one of `writable`, or
/// between two arrays of `writable`, by the same sorted sweep as the update functions. For
/// steps that span several native calls (several dtype groups), so that a clash between two
/// groups is found before the first one writes.
#[pyfunction]
#[pyo3(signature = (readonly, writable, names=None))]
pub fn check_disjoint<'py>(
    readonly: &Bound<'py, PyAny>,
    writable: &Bound<'py, PyAny>,
    names: Option<&Bound<'py, PyAny>>,
) -> PyResult<()> {
    let ro = prepare::items(readonly, "readonly")?;
    let rw = prepare::items(writable, "writable")?;
    prepare::check_disjoint(&ro, &rw, &Names(names))
}
