//! The update-rule `#[pyfunction]`s: one per rule, each a thin shell over `Call::run`.

use super::args::{self, finite};
use super::call::Call;
use super::options::StepOptions;
use super::prepare::{self, Names};
use crate::error::Error;
use crate::kernels::{self, Clip, Mode};
use pyo3::prelude::*;

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
