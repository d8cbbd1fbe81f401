//! The machinery every writing call shares: validate every array of the call into kernel
//! tensors, build the prologue from `StepOptions`, and run a rule with the GIL released when
//! the call is large.

use super::options::StepOptions;
use super::prepare::{self, Dtype, Names, State};
use super::runtime::count_completed;
use crate::error::Error;
use crate::kernels::{self, Clip, Hyperparameters, Mode, Prologue, Real, Rule};
use numpy::Element;
use pyo3::prelude::*;

/// Calls smaller than this keep the GIL: releasing and re-taking it costs more than the work.
pub(crate) const DETACH_FROM: usize = 1 << 14;

/// Everything a rule call shares, whatever the rule.
pub(crate) struct Call<'a, 'py> {
    pub(crate) params: &'a Bound<'py, PyAny>,
    pub(crate) grads: Option<&'a Bound<'py, PyAny>>,
    pub(crate) slots: Vec<(&'static str, &'a Bound<'py, PyAny>)>,
    pub(crate) learning_rate: f64,
    pub(crate) options: Option<&'a Bound<'py, StepOptions>>,
    pub(crate) names: Names<'a, 'py>,
    pub(crate) mode: Mode,
}

impl Call<'_, '_> {
    /// Validates the call, then runs the rule `hyper` builds for the parameters' dtype.
    pub(crate) fn run<H: Hyperparameters>(&self, py: Python<'_>, hyper: &H) -> PyResult<()> {
        let params = prepare::items(self.params, "params")?;
        if let Some(first) = params.first() {
            match prepare::group_dtype(first, &self.names)? {
                Dtype::F32 => self.run_typed::<f32, H>(py, &params, hyper)?,
                Dtype::F64 => self.run_typed::<f64, H>(py, &params, hyper)?,
            }
        }
        count_completed();
        Ok(())
    }

    fn run_typed<'py, T: Real + Element, H: Hyperparameters>(
        &self,
        py: Python<'py>,
        params: &[Bound<'py, PyAny>],
        hyper: &H,
    ) -> PyResult<()> {
        self.with_tensors::<T, ()>(py, params, |tensors, pro, mode, slots| {
            let rule = hyper.build::<T>();
            if mode == Mode::Update && rule.slots() != slots {
                return Err(Error::value_error(format!(
                    "this update needs {} slot lists, got {slots}",
                    rule.slots(),
                ))
                .into());
            }
            detach_if_large(py, tensors, || kernels::run(&rule, tensors, pro, mode));
            Ok(())
        })
    }

    /// Validates every array of the call and hands `f` the tensors, the prologue's scalars,
    /// the mode and the number of slot lists given. The arrays stay borrowed until `f`
    /// returns.
    pub(crate) fn with_tensors<'py, T: Real + Element, Out>(
        &self,
        py: Python<'py>,
        params: &[Bound<'py, PyAny>],
        f: impl FnOnce(&[kernels::Tensor<T>], &Prologue<T>, Mode, usize) -> PyResult<Out>,
    ) -> PyResult<Out> {
        let grads = self.grads.map(|g| prepare::items(g, "grads")).transpose()?;
        let mut slots = Vec::with_capacity(self.slots.len());
        for (what, list) in &self.slots {
            slots.push((*what, prepare::items(list, what)?));
        }
        let opts = self.options.map(Bound::get);
        let accumulators = opts
            .and_then(|o| o.accumulators.as_ref())
            .map(|a| prepare::items(a.bind(py), "accumulators"))
            .transpose()?;
        let averages = opts
            .and_then(|o| o.averages.as_ref())
            .map(|a| prepare::items(a.bind(py), "averages"))
            .transpose()?;
        let mode = match opts {
            Some(o) if o.accumulate_only => Mode::AccumulateOnly,
            _ => self.mode,
        };
        let state = State {
            slots,
            accumulators: accumulators.as_deref(),
            averages: averages.as_deref(),
            decay_mask: opts.and_then(|o| o.weight_decay_mask.as_deref()),
        };
        let mut keep = Vec::new();
        let tensors =
            prepare::tensors::<T>(py, params, grads.as_deref(), &state, &self.names, &mut keep)?;
        let lr = T::from_f64(self.learning_rate);
        let pro = match opts {
            None => Prologue::none(),
            Some(o) => Prologue {
                loss_scale: o.loss_scale.map(T::from_f64),
                accumulation_steps: accumulators
                    .as_ref()
                    .map(|_| T::from_f64(f64::from(o.accumulation_steps))),
                clip: match o.clip {
                    Clip::None => Clip::None,
                    Clip::Norm(c) => Clip::Norm(T::from_f64(c)),
                    Clip::GlobalNorm(c, inverse) => {
                        Clip::GlobalNorm(T::from_f64(c), T::from_f64(inverse))
                    }
                    Clip::Value(c) => Clip::Value(T::from_f64(c)),
                    Clip::Scale(c) => Clip::Scale(T::from_f64(c)),
                },
                weight_decay: o.weight_decay.map(|wd| {
                    (
                        T::from_f64(wd),
                        o.weight_decay_learning_rate.map_or(lr, T::from_f64),
                    )
                }),
                ema: averages
                    .as_ref()
                    .map(|_| (T::from_f64(o.ema_momentum), o.ema_overwrite)),
                lazy: o.lazy,
            },
        };
        let out = f(&tensors, &pro, mode, state.slots.len());
        drop(keep);
        out
    }
}

/// Runs `work` with the GIL released when the call is large enough to be worth it.
pub(crate) fn detach_if_large<T: Real, Out: Send>(
    py: Python<'_>,
    tensors: &[kernels::Tensor<T>],
    work: impl FnOnce() -> Out + Send,
) -> Out {
    let total: usize = tensors.iter().map(|t| t.len).sum();
    if total >= DETACH_FROM {
        py.detach(work)
    } else {
        work()
    }
}
