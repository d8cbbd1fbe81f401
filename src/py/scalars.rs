//! Correctly rounded scalar functions for the Python layer (`crate::kernels::crmath`): the
//! schedules and Nadam's momentum cache take their powers, logs and cosines here, so the
//! numbers a step derives do not depend on NumPy's SIMD paths or on the C library.
//!
//! Each `*_f32` function rounds its arguments to f32 first (as Keras casts a Python float to
//! the tensor's dtype) and returns the f32 result as a Python float, which holds it exactly.

use crate::kernels::crmath;
use pyo3::prelude::*;

/// `x ** y` in float32, correctly rounded.
#[pyfunction]
#[must_use]
pub fn pow_f32(x: f64, y: f64) -> f64 {
    f64::from(crmath::pow_f32(x as f32, y as f32))
}

/// `x ** y` in float64, correctly rounded.
#[pyfunction]
#[must_use]
pub fn pow_f64(x: f64, y: f64) -> f64 {
    crmath::pow_f64(x, y)
}

/// `log(x)` in float32, correctly rounded.
#[pyfunction]
#[must_use]
pub fn log_f32(x: f64) -> f64 {
    f64::from(crmath::ln_f32(x as f32))
}

/// `log(x)` in float64, correctly rounded.
#[pyfunction]
#[must_use]
pub fn log_f64(x: f64) -> f64 {
    crmath::ln_f64(x)
}

/// `cos(x)` in float32, correctly rounded.
#[pyfunction]
#[must_use]
pub fn cos_f32(x: f64) -> f64 {
    f64::from(crmath::cos_f32(x as f32))
}

/// `cos(x)` in float64, correctly rounded.
#[pyfunction]
#[must_use]
pub fn cos_f64(x: f64) -> f64 {
    crmath::cos_f64(x)
}
