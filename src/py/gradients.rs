//! The gradients as an update step would see them: their sum of squares, or the gradients
//! themselves.

use super::call::{detach_if_large, Call};
use super::options::StepOptions;
use super::prepare::{self, Dtype, Names};
use crate::kernels::transform::TransformGradients;
use crate::kernels::{self, Mode};
use pyo3::prelude::*;

/// A call over the gradients alone: no slots, no learning rate.
fn gradient_call<'a, 'py>(
    params: &'a Bound<'py, PyAny>,
    grads: &'a Bound<'py, PyAny>,
    options: Option<&'a Bound<'py, StepOptions>>,
    names: Option<&'a Bound<'py, PyAny>>,
) -> Call<'a, 'py> {
    Call {
        params,
        grads: Some(grads),
        slots: Vec::new(),
        learning_rate: 0.0,
        options,
        names: Names(names),
        mode: Mode::Update,
    }
}

/// The sum of squares of the gradients as an update step would see them (unscaled and
/// averaged with the accumulators per `options`; its clipping, weight decay and EMA are
/// ignored). Writes nothing. For a `global_clipnorm` over several calls.
#[pyfunction]
#[pyo3(signature = (params, grads, options=None, names=None))]
pub fn gradient_sum_squares<'py>(
    py: Python<'py>,
    params: &Bound<'py, PyAny>,
    grads: &Bound<'py, PyAny>,
    options: Option<&Bound<'py, StepOptions>>,
    names: Option<&Bound<'py, PyAny>>,
) -> PyResult<f64> {
    let call = gradient_call(params, grads, options, names);
    let params = prepare::items(params, "params")?;
    let Some(first) = params.first() else {
        return Ok(0.0);
    };
    match prepare::group_dtype(first, &call.names)? {
        Dtype::F32 => call.with_tensors::<f32, f64>(py, &params, |tensors, pro, _, _| {
            Ok(detach_if_large(py, tensors, || {
                kernels::gradient_sum_squares(tensors, pro)
            }))
        }),
        Dtype::F64 => call.with_tensors::<f64, f64>(py, &params, |tensors, pro, _, _| {
            Ok(detach_if_large(py, tensors, || {
                kernels::gradient_sum_squares(tensors, pro)
            }))
        }),
    }
}

/// Writes into `out` the gradients an update step would see: unscaled, averaged with the
/// accumulators (which are then reset) and clipped per `options`, in `out`'s dtype. With
/// `accumulate_only`, only adds to the accumulators and leaves `out` alone. Validated and
/// counted (`completed_calls`) like an update; for the optimizers whose rule runs in NumPy.
#[pyfunction]
#[pyo3(signature = (out, grads, options=None, names=None))]
pub fn transform_gradients<'py>(
    py: Python<'py>,
    out: &Bound<'py, PyAny>,
    grads: &Bound<'py, PyAny>,
    options: Option<&Bound<'py, StepOptions>>,
    names: Option<&Bound<'py, PyAny>>,
) -> PyResult<()> {
    let call = gradient_call(out, grads, options, names);
    call.run(py, &TransformGradients)
}
