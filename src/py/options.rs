//! `StepOptions`: the cross-cutting parts of a step (loss scale, gradient accumulation,
//! clipping, weight decay, EMA), validated once when built.

use super::args::{self, finite};
use crate::error::Error;
use crate::kernels::Clip;
use pyo3::prelude::*;

/// The cross-cutting parts of a step (see `_native.pyi`). Built by the Python optimizer for
/// steps that use any of them; immutable once built.
#[pyclass(module = "ferroptim._native", frozen)]
pub struct StepOptions {
    pub(crate) loss_scale: Option<f64>,
    pub(crate) accumulators: Option<Py<PyAny>>,
    pub(crate) accumulation_steps: u32,
    pub(crate) accumulate_only: bool,
    pub(crate) clip: Clip<f64>,
    pub(crate) weight_decay: Option<f64>,
    pub(crate) weight_decay_mask: Option<Vec<bool>>,
    pub(crate) weight_decay_learning_rate: Option<f64>,
    pub(crate) averages: Option<Py<PyAny>>,
    pub(crate) ema_momentum: f64,
    pub(crate) ema_overwrite: bool,
    pub(crate) lazy: bool,
}

#[pymethods]
impl StepOptions {
    #[new]
    #[pyo3(signature = (*, loss_scale=None, accumulators=None, accumulation_steps=0,
        accumulate_only=false, clipnorm=None, global_clipnorm=None, clipvalue=None,
        clip_scale=None, weight_decay=None, weight_decay_mask=None, weight_decay_learning_rate=None,
        averages=None, ema_momentum=0.0, ema_overwrite=false, lazy=false))]
    #[allow(clippy::too_many_arguments, clippy::fn_params_excessive_bools)]
    fn new(
        #[pyo3(from_py_with = args::opt_real)] loss_scale: Option<f64>,
        accumulators: Option<Py<PyAny>>,
        #[pyo3(from_py_with = args::uint32)] accumulation_steps: u32,
        accumulate_only: bool,
        #[pyo3(from_py_with = args::opt_real)] clipnorm: Option<f64>,
        #[pyo3(from_py_with = args::opt_real)] global_clipnorm: Option<f64>,
        #[pyo3(from_py_with = args::opt_real)] clipvalue: Option<f64>,
        #[pyo3(from_py_with = args::opt_real)] clip_scale: Option<f64>,
        #[pyo3(from_py_with = args::opt_real)] weight_decay: Option<f64>,
        weight_decay_mask: Option<Vec<bool>>,
        #[pyo3(from_py_with = args::opt_real)] weight_decay_learning_rate: Option<f64>,
        averages: Option<Py<PyAny>>,
        #[pyo3(from_py_with = args::real)] ema_momentum: f64,
        ema_overwrite: bool,
        lazy: bool,
    ) -> PyResult<Self> {
        let clip = match (clipnorm, global_clipnorm, clipvalue, clip_scale) {
            (None, None, None, None) => Clip::None,
            (Some(c), None, None, None) => Clip::Norm(finite("clipnorm", c)?),
            (None, Some(c), None, None) => {
                let c = finite("global_clipnorm", c)?;
                Clip::GlobalNorm(c, 1.0 / c)
            }
            (None, None, Some(c), None) => Clip::Value(finite("clipvalue", c)?),
            // A global scale may be NaN: Keras poisons every gradient when the norm is not
            // finite.
            (None, None, None, Some(s)) => Clip::Scale(s),
            _ => {
                return Err(Error::value_error(
                    "Only one of `clipnorm`, `clipvalue`, `global_clipnorm` and `clip_scale` \
                     can be set.",
                )
                .into())
            }
        };
        if let Some(s) = loss_scale {
            finite("loss_scale_factor", s)?;
        }
        if let Some(w) = weight_decay {
            finite("weight_decay", w)?;
        }
        if let Some(lr) = weight_decay_learning_rate {
            finite("weight_decay_learning_rate", lr)?;
        }
        finite("ema_momentum", ema_momentum)?;
        if accumulators.is_some() && accumulation_steps < 1 {
            return Err(Error::value_error(
                "`gradient_accumulation_steps` must be an integer >= 2 when accumulators are given.",
            )
            .into());
        }
        if accumulate_only && accumulators.is_none() {
            return Err(Error::value_error("`accumulate_only` needs `accumulators`.").into());
        }
        Ok(StepOptions {
            loss_scale,
            accumulators,
            accumulation_steps,
            accumulate_only,
            clip,
            weight_decay,
            weight_decay_mask,
            weight_decay_learning_rate,
            averages,
            ema_momentum,
            ema_overwrite,
            lazy,
        })
    }
}
