//! The `#[pyfunction]`s: one per update rule, each a thin shell over `run_rule`.

use super::args;
use super::prepare::{self, Dtype, Names, State};
use crate::error::Error;
use crate::kernels::{self, pool, simd, Clip, Mode, Prologue, Real, Rule};
use numpy::Element;
use pyo3::prelude::*;
use std::cell::Cell;

/// Calls smaller than this keep the GIL: releasing and re-taking it costs more than the work.
pub(crate) const DETACH_FROM: usize = 1 << 14;

thread_local! {
    /// Writing native calls that returned successfully on this thread (see `completed_calls`).
    static COMPLETED: Cell<u64> = const { Cell::new(0) };
}

/// Counts a writing call that has finished its writes and is about to return success.
pub(crate) fn count_completed() {
    COMPLETED.with(|c| c.set(c.get().wrapping_add(1)));
}

/// The number of writing native calls (every update rule, `ema`, `adafactor`) that returned
/// successfully on this thread so far.
///
/// Python raises a pending `KeyboardInterrupt` the moment a native call returns, so from Python
/// a call that completed its writes and was then interrupted looks like a call that failed. A
/// step reads this counter before its calls and again when an exception reaches it: the
/// difference is how many of its calls completed, and the step is either finished or left
/// untouched, never half applied.
#[pyfunction]
#[must_use]
pub fn completed_calls() -> u64 {
    COMPLETED.with(Cell::get)
}

/// The cross-cutting parts of a step (see `_native.pyi`). Built by the Python optimizer for
/// steps that use any of them; immutable once built.
#[pyclass(module = "ferroptim._native", frozen)]
pub struct StepOptions {
    loss_scale: Option<f64>,
    accumulators: Option<Py<PyAny>>,
    accumulation_steps: u32,
    accumulate_only: bool,
    clip: Clip<f64>,
    weight_decay: Option<f64>,
    weight_decay_mask: Option<Vec<bool>>,
    weight_decay_learning_rate: Option<f64>,
    averages: Option<Py<PyAny>>,
    ema_momentum: f64,
    ema_overwrite: bool,
}

fn finite(name: &str, x: f64) -> PyResult<f64> {
    if x.is_finite() {
        Ok(x)
    } else {
        Err(Error::value_error(format!(
            "`{name}` must be a finite number. Received: {name}={x}"
        ))
        .into())
    }
}

#[pymethods]
impl StepOptions {
    #[new]
    #[pyo3(signature = (*, loss_scale=None, accumulators=None, accumulation_steps=0,
        accumulate_only=false, clipnorm=None, global_clipnorm=None, clipvalue=None,
        clip_scale=None, weight_decay=None, weight_decay_mask=None, weight_decay_learning_rate=None,
        averages=None, ema_momentum=0.0, ema_overwrite=false))]
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
        })
    }
}

/// Everything a rule call shares, whatever the rule.
struct Call<'a, 'py> {
    params: &'a Bound<'py, PyAny>,
    grads: Option<&'a Bound<'py, PyAny>>,
    slots: Vec<(&'static str, &'a Bound<'py, PyAny>)>,
    learning_rate: f64,
    options: Option<&'a Bound<'py, StepOptions>>,
    names: Names<'a, 'py>,
    mode: Mode,
}

impl Call<'_, '_> {
    fn run<R32, R64>(
        &self,
        py: Python<'_>,
        rule32: impl FnOnce() -> R32,
        rule64: impl FnOnce() -> R64,
    ) -> PyResult<()>
    where
        R32: Rule<f32> + Send,
        R64: Rule<f64> + Send,
    {
        let params = prepare::items(self.params, "params")?;
        if let Some(first) = params.first() {
            match prepare::group_dtype(first, &self.names)? {
                Dtype::F32 => self.run_typed::<f32, R32>(py, &params, rule32)?,
                Dtype::F64 => self.run_typed::<f64, R64>(py, &params, rule64)?,
            }
        }
        count_completed();
        Ok(())
    }

    fn run_typed<'py, T: Real + Element, R: Rule<T> + Send>(
        &self,
        py: Python<'py>,
        params: &[Bound<'py, PyAny>],
        rule: impl FnOnce() -> R,
    ) -> PyResult<()> {
        self.with_tensors::<T, ()>(py, params, |tensors, pro, mode, slots| {
            let rule = rule();
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
    fn with_tensors<'py, T: Real + Element, Out>(
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
            },
        };
        let out = f(&tensors, &pro, mode, state.slots.len());
        drop(keep);
        out
    }
}

/// Runs `work` with the GIL released when the call is large enough to be worth it.
fn detach_if_large<T: Real, Out: Send>(
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

fn check_iterations(iterations: i64) -> PyResult<u64> {
    u64::try_from(iterations).map_err(|_| {
        Error::value_error(format!(
            "`iterations` must be >= 0. Received: iterations={iterations}"
        ))
        .into()
    })
}

/// SGD, optionally with (Nesterov) momentum. `momentums` is None when momentum is 0.
#[pyfunction]
#[pyo3(signature = (params, grads, momentums, learning_rate, momentum, nesterov, options=None,
    names=None))]
#[allow(clippy::too_many_arguments)]
pub fn sgd<'py>(
    py: Python<'py>,
    params: &Bound<'py, PyAny>,
    grads: &Bound<'py, PyAny>,
    momentums: Option<&Bound<'py, PyAny>>,
    #[pyo3(from_py_with = args::real)] learning_rate: f64,
    #[pyo3(from_py_with = args::real)] momentum: f64,
    nesterov: bool,
    options: Option<&Bound<'py, StepOptions>>,
    names: Option<&Bound<'py, PyAny>>,
) -> PyResult<()> {
    finite("learning_rate", learning_rate)?;
    finite("momentum", momentum)?;
    if (momentum != 0.0) != momentums.is_some() {
        return Err(
            Error::value_error("`momentums` must be given exactly when momentum != 0").into(),
        );
    }
    let call = Call {
        params,
        grads: Some(grads),
        slots: momentums.map(|m| ("momentum", m)).into_iter().collect(),
        learning_rate,
        options,
        names: Names(names),
        mode: Mode::Update,
    };
    call.run(
        py,
        || kernels::sgd::Sgd::<f32>::new(learning_rate, momentum, nesterov),
        || kernels::sgd::Sgd::<f64>::new(learning_rate, momentum, nesterov),
    )
}

/// Adam (and AdamW): `iterations` is the count before this step.
#[pyfunction]
#[pyo3(signature = (params, grads, momentums, velocities, velocity_hats, learning_rate, beta_1,
    beta_2, epsilon, iterations, options=None, names=None))]
#[allow(clippy::too_many_arguments)]
pub fn adam<'py>(
    py: Python<'py>,
    params: &Bound<'py, PyAny>,
    grads: &Bound<'py, PyAny>,
    momentums: &Bound<'py, PyAny>,
    velocities: &Bound<'py, PyAny>,
    velocity_hats: Option<&Bound<'py, PyAny>>,
    #[pyo3(from_py_with = args::real)] learning_rate: f64,
    #[pyo3(from_py_with = args::real)] beta_1: f64,
    #[pyo3(from_py_with = args::real)] beta_2: f64,
    #[pyo3(from_py_with = args::real)] epsilon: f64,
    #[pyo3(from_py_with = args::int)] iterations: i64,
    options: Option<&Bound<'py, StepOptions>>,
    names: Option<&Bound<'py, PyAny>>,
) -> PyResult<()> {
    finite("learning_rate", learning_rate)?;
    finite("beta_1", beta_1)?;
    finite("beta_2", beta_2)?;
    finite("epsilon", epsilon)?;
    let it = check_iterations(iterations)?;
    let amsgrad = velocity_hats.is_some();
    let mut slots = vec![("momentum", momentums), ("velocity", velocities)];
    if let Some(vh) = velocity_hats {
        slots.push(("velocity_hat", vh));
    }
    let call = Call {
        params,
        grads: Some(grads),
        slots,
        learning_rate,
        options,
        names: Names(names),
        mode: Mode::Update,
    };
    call.run(
        py,
        || kernels::adam::Adam::<f32>::new(learning_rate, beta_1, beta_2, epsilon, it, amsgrad),
        || kernels::adam::Adam::<f64>::new(learning_rate, beta_1, beta_2, epsilon, it, amsgrad),
    )
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
    let call = Call {
        params,
        grads: Some(grads),
        slots: Vec::new(),
        learning_rate: 0.0,
        options,
        names: Names(names),
        mode: Mode::Update,
    };
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

/// The EMA stage alone, for variables that took no part in the step.
#[pyfunction]
#[pyo3(signature = (params, averages, ema_momentum, ema_overwrite, names=None))]
pub fn ema<'py>(
    py: Python<'py>,
    params: &Bound<'py, PyAny>,
    averages: &Bound<'py, PyAny>,
    #[pyo3(from_py_with = args::real)] ema_momentum: f64,
    ema_overwrite: bool,
    names: Option<&Bound<'py, PyAny>>,
) -> PyResult<()> {
    finite("ema_momentum", ema_momentum)?;
    let options = Bound::new(
        py,
        StepOptions {
            loss_scale: None,
            accumulators: None,
            accumulation_steps: 0,
            accumulate_only: false,
            clip: Clip::None,
            weight_decay: None,
            weight_decay_mask: None,
            weight_decay_learning_rate: None,
            averages: Some(averages.clone().unbind()),
            ema_momentum,
            ema_overwrite,
        },
    )?;
    let call = Call {
        params,
        grads: None,
        slots: Vec::new(),
        learning_rate: 0.0,
        options: Some(&options),
        names: Names(names),
        mode: Mode::EmaOnly,
    };
    let none = kernels::roofline::Roofline { slots: 0 };
    call.run(py, || none, || kernels::roofline::Roofline { slots: 0 })
}

/// The benchmark floor: the bytes of a step with one add per stream.
#[pyfunction]
pub fn roofline<'py>(
    py: Python<'py>,
    params: &Bound<'py, PyAny>,
    grads: &Bound<'py, PyAny>,
    slots: &Bound<'py, PyAny>,
) -> PyResult<()> {
    const NAMES: [&str; kernels::driver::MAX_SLOTS] = ["slot 0", "slot 1", "slot 2", "slot 3"];
    let lists = prepare::items(slots, "slots")?;
    if lists.len() > NAMES.len() {
        return Err(Error::value_error(format!("at most {} slot lists", NAMES.len())).into());
    }
    let call = Call {
        params,
        grads: Some(grads),
        slots: NAMES.iter().copied().zip(lists.iter()).collect(),
        learning_rate: 0.0,
        options: None,
        names: Names(None),
        mode: Mode::Update,
    };
    let k = lists.len();
    call.run(
        py,
        || kernels::roofline::Roofline { slots: k },
        || kernels::roofline::Roofline { slots: k },
    )
}

/// Most threads a step may use: far above any machine's core count, low enough that a
/// mistaken huge count is refused rather than spawning threads until the process stalls.

#[pyfunction]
pub fn set_num_threads(#[pyo3(from_py_with = args::int)] n: i64) -> PyResult<()> {
    let max = pool::MAX_THREADS;
    if !(1..=max as i64).contains(&n) {
        return Err(Error::value_error(format!(
            "The number of threads must be between 1 and {max}. Received: {n}"
        ))
        .into());
    }
    pool::set_num_threads(usize::try_from(n).unwrap_or(1));
    Ok(())
}

#[pyfunction]
#[must_use]
pub fn get_num_threads() -> usize {
    pool::num_threads()
}

#[pyfunction]
#[must_use]
pub fn simd_level() -> &'static str {
    simd::current().name()
}

#[pyfunction]
pub fn set_simd_level(level: &str) -> PyResult<()> {
    let parsed = simd::Level::parse(level).ok_or_else(|| {
        Error::value_error(format!(
            "Unknown SIMD level {level:?}; expected \"auto\", \"baseline\", \"avx2\" or \"avx512\""
        ))
    })?;
    simd::set(parsed).map_err(|best| {
        Error::value_error(format!(
            "This CPU does not support {level}; the best level here is {}",
            best.name()
        ))
        .into()
    })
}

/// Builds the `Call` of an update rule with these slot lists.
fn update_call<'a, 'py>(
    params: &'a Bound<'py, PyAny>,
    grads: &'a Bound<'py, PyAny>,
    slots: Vec<(&'static str, &'a Bound<'py, PyAny>)>,
    learning_rate: f64,
    options: Option<&'a Bound<'py, StepOptions>>,
    names: Option<&'a Bound<'py, PyAny>>,
) -> PyResult<Call<'a, 'py>> {
    finite("learning_rate", learning_rate)?;
    Ok(Call {
        params,
        grads: Some(grads),
        slots,
        learning_rate,
        options,
        names: Names(names),
        mode: Mode::Update,
    })
}

/// RMSprop. `momentums` is None unless momentum > 0; `average_gradients` None unless centered.
#[pyfunction]
#[pyo3(signature = (params, grads, velocities, momentums, average_gradients, learning_rate, rho,
    momentum, epsilon, options=None, names=None))]
#[allow(clippy::too_many_arguments)]
pub fn rmsprop<'py>(
    py: Python<'py>,
    params: &Bound<'py, PyAny>,
    grads: &Bound<'py, PyAny>,
    velocities: &Bound<'py, PyAny>,
    momentums: Option<&Bound<'py, PyAny>>,
    average_gradients: Option<&Bound<'py, PyAny>>,
    #[pyo3(from_py_with = args::real)] learning_rate: f64,
    #[pyo3(from_py_with = args::real)] rho: f64,
    #[pyo3(from_py_with = args::real)] momentum: f64,
    #[pyo3(from_py_with = args::real)] epsilon: f64,
    options: Option<&Bound<'py, StepOptions>>,
    names: Option<&Bound<'py, PyAny>>,
) -> PyResult<()> {
    finite("rho", rho)?;
    finite("momentum", momentum)?;
    finite("epsilon", epsilon)?;
    if (momentum > 0.0) != momentums.is_some() {
        return Err(
            Error::value_error("`momentums` must be given exactly when momentum > 0").into(),
        );
    }
    let centered = average_gradients.is_some();
    let mut slots = vec![("velocity", velocities)];
    slots.extend(momentums.map(|m| ("momentum", m)));
    slots.extend(average_gradients.map(|a| ("average_gradient", a)));
    update_call(params, grads, slots, learning_rate, options, names)?.run(
        py,
        || kernels::rmsprop::RmsProp::<f32>::new(learning_rate, rho, momentum, epsilon, centered),
        || kernels::rmsprop::RmsProp::<f64>::new(learning_rate, rho, momentum, epsilon, centered),
    )
}

/// Adagrad.
#[pyfunction]
#[pyo3(signature = (params, grads, accumulators, learning_rate, epsilon, options=None, names=None))]
#[allow(clippy::too_many_arguments)]
pub fn adagrad<'py>(
    py: Python<'py>,
    params: &Bound<'py, PyAny>,
    grads: &Bound<'py, PyAny>,
    accumulators: &Bound<'py, PyAny>,
    #[pyo3(from_py_with = args::real)] learning_rate: f64,
    #[pyo3(from_py_with = args::real)] epsilon: f64,
    options: Option<&Bound<'py, StepOptions>>,
    names: Option<&Bound<'py, PyAny>>,
) -> PyResult<()> {
    finite("epsilon", epsilon)?;
    update_call(
        params,
        grads,
        vec![("accumulator", accumulators)],
        learning_rate,
        options,
        names,
    )?
    .run(
        py,
        || kernels::adagrad::Adagrad::<f32>::new(learning_rate, epsilon),
        || kernels::adagrad::Adagrad::<f64>::new(learning_rate, epsilon),
    )
}

/// Adadelta.
#[pyfunction]
#[pyo3(signature = (params, grads, accumulated_grads, accumulated_delta_vars, learning_rate, rho,
    epsilon, options=None, names=None))]
#[allow(clippy::too_many_arguments)]
pub fn adadelta<'py>(
    py: Python<'py>,
    params: &Bound<'py, PyAny>,
    grads: &Bound<'py, PyAny>,
    accumulated_grads: &Bound<'py, PyAny>,
    accumulated_delta_vars: &Bound<'py, PyAny>,
    #[pyo3(from_py_with = args::real)] learning_rate: f64,
    #[pyo3(from_py_with = args::real)] rho: f64,
    #[pyo3(from_py_with = args::real)] epsilon: f64,
    options: Option<&Bound<'py, StepOptions>>,
    names: Option<&Bound<'py, PyAny>>,
) -> PyResult<()> {
    finite("rho", rho)?;
    finite("epsilon", epsilon)?;
    let slots = vec![
        ("accumulated_grad", accumulated_grads),
        ("accumulated_delta_var", accumulated_delta_vars),
    ];
    update_call(params, grads, slots, learning_rate, options, names)?.run(
        py,
        || kernels::adadelta::Adadelta::<f32>::new(learning_rate, rho, epsilon),
        || kernels::adadelta::Adadelta::<f64>::new(learning_rate, rho, epsilon),
    )
}

/// Adamax: `iterations` is the count before this step.
#[pyfunction]
#[pyo3(signature = (params, grads, momentums, norms, learning_rate, beta_1, beta_2, epsilon,
    iterations, options=None, names=None))]
#[allow(clippy::too_many_arguments)]
pub fn adamax<'py>(
    py: Python<'py>,
    params: &Bound<'py, PyAny>,
    grads: &Bound<'py, PyAny>,
    momentums: &Bound<'py, PyAny>,
    norms: &Bound<'py, PyAny>,
    #[pyo3(from_py_with = args::real)] learning_rate: f64,
    #[pyo3(from_py_with = args::real)] beta_1: f64,
    #[pyo3(from_py_with = args::real)] beta_2: f64,
    #[pyo3(from_py_with = args::real)] epsilon: f64,
    #[pyo3(from_py_with = args::int)] iterations: i64,
    options: Option<&Bound<'py, StepOptions>>,
    names: Option<&Bound<'py, PyAny>>,
) -> PyResult<()> {
    finite("beta_1", beta_1)?;
    finite("beta_2", beta_2)?;
    finite("epsilon", epsilon)?;
    let it = check_iterations(iterations)?;
    let slots = vec![("momentum", momentums), ("norm", norms)];
    update_call(params, grads, slots, learning_rate, options, names)?.run(
        py,
        || kernels::adamax::Adamax::<f32>::new(learning_rate, beta_1, beta_2, epsilon, it),
        || kernels::adamax::Adamax::<f64>::new(learning_rate, beta_1, beta_2, epsilon, it),
    )
}

/// Nadam: `u_product` already includes this step's factor; `schedule_decay` is 1 for
/// Keras 3 and Keras 2's `schedule_decay` otherwise.
#[pyfunction]
#[pyo3(signature = (params, grads, momentums, velocities, learning_rate, beta_1, beta_2, epsilon,
    iterations, u_product, schedule_decay=1.0, options=None, names=None))]
#[allow(clippy::too_many_arguments)]
pub fn nadam<'py>(
    py: Python<'py>,
    params: &Bound<'py, PyAny>,
    grads: &Bound<'py, PyAny>,
    momentums: &Bound<'py, PyAny>,
    velocities: &Bound<'py, PyAny>,
    #[pyo3(from_py_with = args::real)] learning_rate: f64,
    #[pyo3(from_py_with = args::real)] beta_1: f64,
    #[pyo3(from_py_with = args::real)] beta_2: f64,
    #[pyo3(from_py_with = args::real)] epsilon: f64,
    #[pyo3(from_py_with = args::int)] iterations: i64,
    #[pyo3(from_py_with = args::real)] u_product: f64,
    #[pyo3(from_py_with = args::real)] schedule_decay: f64,
    options: Option<&Bound<'py, StepOptions>>,
    names: Option<&Bound<'py, PyAny>>,
) -> PyResult<()> {
    finite("beta_1", beta_1)?;
    finite("beta_2", beta_2)?;
    finite("epsilon", epsilon)?;
    finite("u_product", u_product)?;
    finite("schedule_decay", schedule_decay)?;
    let it = check_iterations(iterations)?;
    let slots = vec![("momentum", momentums), ("velocity", velocities)];
    update_call(params, grads, slots, learning_rate, options, names)?.run(
        py,
        || {
            kernels::nadam::Nadam::<f32>::new(
                learning_rate,
                beta_1,
                beta_2,
                epsilon,
                it,
                u_product,
                schedule_decay,
            )
        },
        || {
            kernels::nadam::Nadam::<f64>::new(
                learning_rate,
                beta_1,
                beta_2,
                epsilon,
                it,
                u_product,
                schedule_decay,
            )
        },
    )
}

/// Lion.
#[pyfunction]
#[pyo3(signature = (params, grads, momentums, learning_rate, beta_1, beta_2, options=None,
    names=None))]
#[allow(clippy::too_many_arguments)]
pub fn lion<'py>(
    py: Python<'py>,
    params: &Bound<'py, PyAny>,
    grads: &Bound<'py, PyAny>,
    momentums: &Bound<'py, PyAny>,
    #[pyo3(from_py_with = args::real)] learning_rate: f64,
    #[pyo3(from_py_with = args::real)] beta_1: f64,
    #[pyo3(from_py_with = args::real)] beta_2: f64,
    options: Option<&Bound<'py, StepOptions>>,
    names: Option<&Bound<'py, PyAny>>,
) -> PyResult<()> {
    finite("beta_1", beta_1)?;
    finite("beta_2", beta_2)?;
    update_call(
        params,
        grads,
        vec![("momentum", momentums)],
        learning_rate,
        options,
        names,
    )?
    .run(
        py,
        || kernels::lion::Lion::<f32>::new(learning_rate, beta_1, beta_2),
        || kernels::lion::Lion::<f64>::new(learning_rate, beta_1, beta_2),
    )
}

/// FTRL.
#[pyfunction]
#[pyo3(signature = (params, grads, accumulators, linears, learning_rate, learning_rate_power,
    l1_regularization_strength, l2_regularization_strength, l2_shrinkage_regularization_strength,
    beta, options=None, names=None))]
#[allow(clippy::too_many_arguments)]
pub fn ftrl<'py>(
    py: Python<'py>,
    params: &Bound<'py, PyAny>,
    grads: &Bound<'py, PyAny>,
    accumulators: &Bound<'py, PyAny>,
    linears: &Bound<'py, PyAny>,
    #[pyo3(from_py_with = args::real)] learning_rate: f64,
    #[pyo3(from_py_with = args::real)] learning_rate_power: f64,
    #[pyo3(from_py_with = args::real)] l1_regularization_strength: f64,
    #[pyo3(from_py_with = args::real)] l2_regularization_strength: f64,
    #[pyo3(from_py_with = args::real)] l2_shrinkage_regularization_strength: f64,
    #[pyo3(from_py_with = args::real)] beta: f64,
    options: Option<&Bound<'py, StepOptions>>,
    names: Option<&Bound<'py, PyAny>>,
) -> PyResult<()> {
    let (p, l1, l2, s) = (
        finite("learning_rate_power", learning_rate_power)?,
        finite("l1_regularization_strength", l1_regularization_strength)?,
        finite("l2_regularization_strength", l2_regularization_strength)?,
        finite(
            "l2_shrinkage_regularization_strength",
            l2_shrinkage_regularization_strength,
        )?,
    );
    finite("beta", beta)?;
    let slots = vec![("accumulator", accumulators), ("linear", linears)];
    update_call(params, grads, slots, learning_rate, options, names)?.run(
        py,
        || kernels::ftrl::Ftrl::<f32>::new(learning_rate, p, l1, l2, s, beta),
        || kernels::ftrl::Ftrl::<f64>::new(learning_rate, p, l1, l2, s, beta),
    )
}

/// Lamb: `iterations` is the count before this step.
#[pyfunction]
#[pyo3(signature = (params, grads, momentums, velocities, learning_rate, beta_1, beta_2, epsilon,
    iterations, options=None, names=None))]
#[allow(clippy::too_many_arguments)]
pub fn lamb<'py>(
    py: Python<'py>,
    params: &Bound<'py, PyAny>,
    grads: &Bound<'py, PyAny>,
    momentums: &Bound<'py, PyAny>,
    velocities: &Bound<'py, PyAny>,
    #[pyo3(from_py_with = args::real)] learning_rate: f64,
    #[pyo3(from_py_with = args::real)] beta_1: f64,
    #[pyo3(from_py_with = args::real)] beta_2: f64,
    #[pyo3(from_py_with = args::real)] epsilon: f64,
    #[pyo3(from_py_with = args::int)] iterations: i64,
    options: Option<&Bound<'py, StepOptions>>,
    names: Option<&Bound<'py, PyAny>>,
) -> PyResult<()> {
    finite("beta_1", beta_1)?;
    finite("beta_2", beta_2)?;
    finite("epsilon", epsilon)?;
    let it = check_iterations(iterations)?;
    let slots = vec![("momentum", momentums), ("velocity", velocities)];
    update_call(params, grads, slots, learning_rate, options, names)?.run(
        py,
        || kernels::lamb::Lamb::<f32>::new(learning_rate, beta_1, beta_2, epsilon, it),
        || kernels::lamb::Lamb::<f64>::new(learning_rate, beta_1, beta_2, epsilon, it),
    )
}

/// Schedule-Free AdamW: `momentums` holds z, the variables y.
#[pyfunction]
#[pyo3(signature = (params, grads, momentums, velocities, learning_rate, beta_1, beta_2, epsilon,
    warmup_steps, iterations, options=None, names=None))]
#[allow(clippy::too_many_arguments)]
pub fn schedule_free_adamw<'py>(
    py: Python<'py>,
    params: &Bound<'py, PyAny>,
    grads: &Bound<'py, PyAny>,
    momentums: &Bound<'py, PyAny>,
    velocities: &Bound<'py, PyAny>,
    #[pyo3(from_py_with = args::real)] learning_rate: f64,
    #[pyo3(from_py_with = args::real)] beta_1: f64,
    #[pyo3(from_py_with = args::real)] beta_2: f64,
    #[pyo3(from_py_with = args::real)] epsilon: f64,
    #[pyo3(from_py_with = args::int)] warmup_steps: i64,
    #[pyo3(from_py_with = args::int)] iterations: i64,
    options: Option<&Bound<'py, StepOptions>>,
    names: Option<&Bound<'py, PyAny>>,
) -> PyResult<()> {
    finite("beta_1", beta_1)?;
    finite("beta_2", beta_2)?;
    finite("epsilon", epsilon)?;
    let it = check_iterations(iterations)?;
    let warmup = u64::try_from(warmup_steps).map_err(|_| {
        Error::value_error(format!(
            "`warmup_steps` must be >= 0. Received: warmup_steps={warmup_steps}"
        ))
    })?;
    let slots = vec![("momentum", momentums), ("velocity", velocities)];
    update_call(params, grads, slots, learning_rate, options, names)?.run(
        py,
        || {
            kernels::schedule_free::ScheduleFree::<f32>::new(
                learning_rate,
                beta_1,
                beta_2,
                epsilon,
                warmup,
                it,
            )
        },
        || {
            kernels::schedule_free::ScheduleFree::<f64>::new(
                learning_rate,
                beta_1,
                beta_2,
                epsilon,
                warmup,
                it,
            )
        },
    )
}

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
                "newton_schulz takes a 2-D array, got shape {shape:?}"
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
