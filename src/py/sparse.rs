//! Row-sparse gradients from Python: a `ferroptim.IndexedSlices(values, indices, dense_shape)`
//! in a call's gradient list, validated and summed into `kernels::Rows` before anything is
//! written.
//!
//! The checks: `dense_shape` is the parameter's shape (of at least one axis); `indices` is a
//! non-empty 1-D integer array, each index in `0..dense_shape[0]`; `values` is a real array of
//! shape `(len(indices),) + dense_shape[1:]`, read in its dtype (the parameters' or the other
//! float dtype) or converted to float64 first (integers). The arrays' byte ranges join the
//! call's aliasing sweep as read-only operands.

use super::prepare::{self, Names, Span};
use crate::error::Error;
use crate::kernels::layout::Operand;
use crate::kernels::rows::Rows;
use crate::kernels::Real;
use numpy::{
    Element, PyArrayDescrMethods, PyArrayDyn, PyArrayMethods, PyUntypedArray, PyUntypedArrayMethods,
};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;

static INDEXED_SLICES: PyOnceLock<Option<Py<PyType>>> = PyOnceLock::new();

/// Whether `obj` is a `ferroptim.IndexedSlices`.
pub(crate) fn is_indexed_slices(py: Python<'_>, obj: &Bound<'_, PyAny>) -> bool {
    let class = INDEXED_SLICES.get_or_init(py, || {
        py.import("ferroptim._indexed_slices")
            .and_then(|m| m.getattr("IndexedSlices"))
            .and_then(|c| c.cast_into::<PyType>().map_err(PyErr::from))
            .map(Bound::unbind)
            .ok()
    });
    class
        .as_ref()
        .is_some_and(|c| obj.is_instance(c.bind(py)).unwrap_or(false))
}

/// The summed rows of the `IndexedSlices` gradient `obj` of the parameter at `i`, whose shape
/// is `shape`; pushes the spans of its arrays to `spans` and any converted array to `keep`.
pub(crate) fn rows<'py, T: Element + Real>(
    py: Python<'py>,
    obj: &Bound<'py, PyAny>,
    shape: &[usize],
    names: &Names<'_, 'py>,
    i: usize,
    keep: &mut Vec<Bound<'py, PyAny>>,
    spans: &mut Vec<Span>,
) -> PyResult<Rows<T>> {
    let what = || format!("the IndexedSlices gradient {}", names.of(i));
    let dense_shape: Vec<usize> = obj.getattr("dense_shape")?.extract().map_err(|_| {
        Error::type_error(format!(
            "{}: `dense_shape` must be a tuple of non-negative ints",
            what()
        ))
    })?;
    if dense_shape != shape {
        return Err(Error::value_error(format!(
            "{} has dense_shape {} but the parameter has shape {}",
            what(),
            prepare::shape_tuple(&dense_shape),
            prepare::shape_tuple(shape)
        ))
        .into());
    }
    let Some((&nrows, rest)) = shape.split_first() else {
        return Err(Error::value_error(format!(
            "{}: a scalar parameter has no rows to index",
            what()
        ))
        .into());
    };

    let indices = obj.getattr("indices")?;
    let index_list = row_indices(py, &indices, nrows, &what)?;
    spans.extend(prepare::any_span(
        &indices,
        false,
        i,
        "the indices of the gradient of",
    )?);

    let mut values = obj.getattr("values")?;
    if prepare::view::<T>(&values).is_none() && prepare::view::<T::Other>(&values).is_none() {
        let converted = prepare::gradient_array::<f64>(py, &values, names, i)?.into_any();
        keep.push(converted.clone());
        values = converted;
    }
    let expected: Vec<usize> = std::iter::once(index_list.len())
        .chain(rest.iter().copied())
        .collect();
    if let Some(raw) = prepare::view::<T>(&values) {
        return summed_values(&raw, &index_list, &expected, i, spans, &what, |x| x);
    }
    let Some(raw) = prepare::view::<T::Other>(&values) else {
        return Err(Error::type_error(format!("{}: `values` is not an array", what())).into());
    };
    summed_values(&raw, &index_list, &expected, i, spans, &what, T::from_other)
}

/// The rows of `values` (in dtype `U`, read as `cast` converts them) summed by index, after
/// checking their shape against `expected` and adding their span to `spans`.
fn summed_values<T: Real, U: Real>(
    raw: &prepare::Raw<'_, U>,
    indices: &[usize],
    expected: &[usize],
    i: usize,
    spans: &mut Vec<Span>,
    what: &dyn Fn() -> String,
    cast: impl Fn(U) -> T + Sync,
) -> PyResult<Rows<T>> {
    if raw.shape != expected {
        return Err(Error::value_error(format!(
            "{}: `values` has shape {} but (len(indices),) + dense_shape[1:] is {}",
            what(),
            prepare::shape_tuple(raw.shape),
            prepare::shape_tuple(expected)
        ))
        .into());
    }
    spans.extend(prepare::span(
        raw,
        false,
        i,
        "the values of the gradient of",
    ));
    let op = values_operand(raw, what)?;
    let row_len = expected[1..].iter().product();
    // SAFETY: `op` views the values array, alive for the call, of shape `expected`; every
    // index is in range (`row_indices`).
    Ok(unsafe { Rows::summed(indices, row_len, &op, raw.shape, cast) })
}

fn values_operand<U>(raw: &prepare::Raw<'_, U>, what: &dyn Fn() -> String) -> PyResult<Operand<U>> {
    let strides = prepare::element_strides(raw, false, &|| format!("the values of {}", what()))?;
    Ok(Operand {
        ptr: raw.ptr,
        strides,
    })
}

/// The indices as row numbers, each checked to be in `0..nrows`.
fn row_indices(
    py: Python<'_>,
    indices: &Bound<'_, PyAny>,
    nrows: usize,
    what: &dyn Fn() -> String,
) -> PyResult<Vec<usize>> {
    let arr = indices
        .cast::<PyUntypedArray>()
        .map_err(|_| Error::type_error(format!("{}: `indices` must be a numpy.ndarray", what())))?;
    let dtype = arr.dtype();
    if !matches!(dtype.kind(), b'i' | b'u') {
        return Err(Error::type_error(format!(
            "{}: `indices` must be integers, got dtype {}",
            what(),
            dtype
        ))
        .into());
    }
    if arr.ndim() != 1 {
        return Err(Error::value_error(format!(
            "{}: `indices` must be 1-D, got shape {}",
            what(),
            prepare::shape_tuple(arr.shape())
        ))
        .into());
    }
    if arr.len() == 0 {
        return Err(Error::value_error(format!(
            "{} has no rows (empty `indices`); pass None for a variable without a gradient",
            what()
        ))
        .into());
    }
    let check = |position: usize, index: i128| -> PyResult<usize> {
        if index < 0 {
            return Err(Error::value_error(format!(
                "{}: index {index} at position {position} is negative",
                what()
            ))
            .into());
        }
        match usize::try_from(index) {
            Ok(r) if r < nrows => Ok(r),
            _ => Err(Error::value_error(format!(
                "{}: index {index} at position {position} is out of range for {nrows} rows",
                what()
            ))
            .into()),
        }
    };
    macro_rules! read_as {
        ($($t:ty),*) => {$(
            if let Ok(a) = indices.cast::<PyArrayDyn<$t>>() {
                let ro = a.try_readonly().map_err(|e| Error::value_error(e.to_string()))?;
                if let Ok(slice) = ro.as_slice() {
                    return slice.iter().enumerate().map(|(k, &x)| check(k, i128::from(x))).collect();
                }
                return ro
                    .as_array()
                    .iter()
                    .enumerate()
                    .map(|(k, &x)| check(k, i128::from(x)))
                    .collect();
            }
        )*};
    }
    read_as!(i64, i32, u64, u32);
    // Narrower integer types (and other byte orders): widened to int64 first, which is exact.
    let widened = py
        .import("numpy")?
        .getattr("asarray")?
        .call1((indices, numpy::dtype::<i64>(py)))?;
    let a = widened
        .cast::<PyArrayDyn<i64>>()
        .map_err(|e| Error::type_error(e.to_string()))?;
    let ro = a
        .try_readonly()
        .map_err(|e| Error::value_error(e.to_string()))?;
    ro.as_array()
        .iter()
        .enumerate()
        .map(|(k, &x)| check(k, i128::from(x)))
        .collect()
}
