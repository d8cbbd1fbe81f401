//! Matrix functions: Muon's Newton-Schulz orthogonalization.

use super::args::{self, finite};
use crate::error::Error;
use crate::kernels::{self, Real};
use numpy::Element;
use pyo3::prelude::*;

/// Muon's Newton-Schulz orthogonalization of one 2-D float32/float64 array; returns a new
/// array of the same shape and dtype.
#[pyfunction]
#[pyo3(signature = (x, steps, a, b, c))]
pub fn newton_schulz<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    #[pyo3(from_py_with = args::int)] steps: i64,
    #[pyo3(from_py_with = args::real)] a: f64,
    #[pyo3(from_py_with = args::real)] b: f64,
    #[pyo3(from_py_with = args::real)] c: f64,
) -> PyResult<Bound<'py, PyAny>> {
    use numpy::{PyArrayDyn, PyArrayMethods, PyUntypedArrayMethods};
    fn run<'py, T: Real + Element>(
        py: Python<'py>,
        x: &Bound<'py, PyArrayDyn<T>>,
        steps: usize,
        (a, b, c): (f64, f64, f64),
    ) -> PyResult<Bound<'py, PyAny>> {
        let shape = x.shape().to_vec();
        let [rows, cols] = shape[..] else {
            return Err(Error::value_error(format!(
                "newton_schulz takes a 2-D array, got shape {}",
                super::prepare::shape_tuple(&shape)
            ))
            .into());
        };
        let ro = x
            .try_readonly()
            .map_err(|e| Error::value_error(e.to_string()))?;
        let mut data: Vec<T> = ro.as_array().iter().copied().collect();
        drop(ro);
        py.detach(|| kernels::newton_schulz::newton_schulz(&mut data, rows, cols, steps, a, b, c));
        Ok(numpy::PyArray1::from_vec(py, data)
            .reshape([rows, cols])?
            .into_any())
    }
    let steps = usize::try_from(steps)
        .map_err(|_| Error::value_error(format!("`ns_steps` must be >= 0. Received: {steps}")))?;
    for (name, v) in [("muon_a", a), ("muon_b", b), ("muon_c", c)] {
        finite(name, v)?;
    }
    if let Ok(arr) = x.cast::<PyArrayDyn<f32>>() {
        run(py, arr, steps, (a, b, c))
    } else if let Ok(arr) = x.cast::<PyArrayDyn<f64>>() {
        run(py, arr, steps, (a, b, c))
    } else {
        Err(Error::type_error("newton_schulz takes a float32 or float64 numpy.ndarray").into())
    }
}
