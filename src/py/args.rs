//! Extractors for numeric arguments (`#[pyo3(from_py_with = ...)]`).
//!
//! CPython raises `OverflowError` for an int that does not fit the target type (`10**400` as a
//! float64, `2**63` as an int64). The bad-input contract has a `ValueError` for a value of the
//! right type that is out of range, so these turn the one into the other; pyo3 adds a note
//! naming the argument. Type errors stay type errors.

use crate::error::Error;
use pyo3::exceptions::PyOverflowError;
use pyo3::prelude::*;

#[cold]
fn out_of_range(py: Python<'_>, err: PyErr, range: &str) -> PyErr {
    if err.is_instance_of::<PyOverflowError>(py) {
        Error::value_error(format!("the value is out of range: {range} expected")).into()
    } else {
        err
    }
}

/// A float64 (a Python float, or an int within float64's range).
pub fn real(obj: &Bound<'_, PyAny>) -> PyResult<f64> {
    obj.extract::<f64>()
        .map_err(|e| out_of_range(obj.py(), e, "a number within float64's range"))
}

/// An optional float64: None, or as `real`.
pub fn opt_real(obj: &Bound<'_, PyAny>) -> PyResult<Option<f64>> {
    if obj.is_none() {
        Ok(None)
    } else {
        real(obj).map(Some)
    }
}

/// An int64.
pub fn int(obj: &Bound<'_, PyAny>) -> PyResult<i64> {
    obj.extract::<i64>()
        .map_err(|e| out_of_range(obj.py(), e, "an integer in [-2**63, 2**63)"))
}

/// A bool (as pyo3 extracts one), for declarations that name every scalar's extractor.
pub fn bool(obj: &Bound<'_, PyAny>) -> PyResult<bool> {
    obj.extract::<bool>()
}

/// A uint32.
pub fn uint32(obj: &Bound<'_, PyAny>) -> PyResult<u32> {
    obj.extract::<u32>()
        .map_err(|e| out_of_range(obj.py(), e, "an integer in [0, 2**32)"))
}

/// `x` if it is finite, else the ValueError every hyperparameter check raises.
pub fn finite(name: &str, x: f64) -> PyResult<f64> {
    if x.is_finite() {
        Ok(x)
    } else {
        Err(Error::value_error(format!(
            "`{name}` must be a finite number. Received: {name}={x}"
        ))
        .into())
    }
}
