//! The update-rule `#[pyfunction]`s, each declared once in `rules!` below: its slot lists (the
//! Keras slot name of each, required or optional), its scalars, and the hyperparameters struct
//! of its kernel. The declaration makes the function (every real scalar checked finite, every
//! integer checked non-negative, both float types built from one struct) and the table
//! `rule_signatures` exports, from which the tests derive their calls.

use super::args::{self, finite};
use super::call::Call;
use super::options::StepOptions;
use super::prepare::{self, Names};
use crate::error::Error;
use crate::kernels::adadelta::AdadeltaParams;
use crate::kernels::adagrad::AdagradParams;
use crate::kernels::adam::AdamParams;
use crate::kernels::adamax::AdamaxParams;
use crate::kernels::ftrl::FtrlParams;
use crate::kernels::lamb::LambParams;
use crate::kernels::lion::LionParams;
use crate::kernels::nadam::NadamParams;
use crate::kernels::rmsprop::RmsPropParams;
use crate::kernels::roofline::Roofline;
use crate::kernels::schedule_free::ScheduleFreeParams;
use crate::kernels::sgd::SgdParams;
use crate::kernels::{self, Clip, Mode};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

/// One argument of a rule function, as `rule_signatures` reports it.
struct Param {
    name: &'static str,
    /// "params", "grads", "slots", "optional_slots", "real", "int", "bool", "options" or
    /// "names".
    kind: &'static str,
    /// The Keras slot name of a slot list.
    slot: Option<&'static str>,
    default: ArgDefault,
}

/// An argument's default value, if it has one.
enum ArgDefault {
    Required,
    None,
    Real(f64),
}

impl Param {
    const fn new(name: &'static str, kind: &'static str) -> Self {
        Param {
            name,
            kind,
            slot: None,
            default: ArgDefault::Required,
        }
    }
}

/// An integer scalar (a count) as u64, or the ValueError every count check raises.
fn nonnegative(name: &str, x: i64) -> PyResult<u64> {
    u64::try_from(x).map_err(|_| {
        Error::value_error(format!("`{name}` must be >= 0. Received: {name}={x}")).into()
    })
}

macro_rules! slot_type {
    ($py:lifetime, required) => { &Bound<$py, PyAny> };
    ($py:lifetime, optional) => { Option<&Bound<$py, PyAny>> };
}

macro_rules! slot_kind {
    (required) => {
        "slots"
    };
    (optional) => {
        "optional_slots"
    };
}

macro_rules! slot_entry {
    (required, $keras:literal, $list:ident) => {
        Some(($keras, $list))
    };
    (optional, $keras:literal, $list:ident) => {
        $list.map(|l| ($keras, l))
    };
}

macro_rules! scalar_type {
    (real) => {
        f64
    };
    (int) => {
        i64
    };
    (bool) => {
        bool
    };
}

macro_rules! checked_scalar {
    (real, $x:ident) => {
        finite(stringify!($x), $x)?
    };
    (int, $x:ident) => {
        nonnegative(stringify!($x), $x)?
    };
    (bool, $x:ident) => {
        $x
    };
}

macro_rules! scalar_default {
    () => {
        ArgDefault::Required
    };
    ($d:tt) => {
        ArgDefault::Real($d)
    };
}

/// Declares the update-rule functions. Each reads
///
/// ```text
/// /// docstring
/// fn name(slot_list: required|optional "keras slot name", ...;
///         learning_rate: real, scalar: real|int|bool [= real default], ...)
///     [where { extra checks }] => the kernel's hyperparameters struct;
/// ```
///
/// and becomes `name(params, grads, *slot lists, *scalars, options=None, names=None)`.
/// Slot lists are passed to the kernel in their order, optional ones only when given.
macro_rules! rules {
    ($(
        $(#[doc = $doc:literal])*
        fn $name:ident(
            $($slot:ident: $presence:ident $keras:literal),+;
            $lr:ident: real $(, $scalar:ident: $kind:ident $(= $default:tt)?)* $(,)?
        ) $(where $check:block)? => $hyper:expr;
    )+) => {
        $(
            $(#[doc = $doc])*
            #[pyfunction]
            #[pyo3(signature = (params, grads, $($slot,)+ $lr, $($scalar $(= $default)?,)*
                options=None, names=None))]
            #[allow(clippy::too_many_arguments)]
            pub fn $name<'py>(
                py: Python<'py>,
                params: &Bound<'py, PyAny>,
                grads: &Bound<'py, PyAny>,
                $($slot: slot_type!('py, $presence),)+
                #[pyo3(from_py_with = args::real)] $lr: f64,
                $(#[pyo3(from_py_with = args::$kind)] $scalar: scalar_type!($kind),)*
                options: Option<&Bound<'py, StepOptions>>,
                names: Option<&Bound<'py, PyAny>>,
            ) -> PyResult<()> {
                let $lr = checked_scalar!(real, $lr);
                $(let $scalar = checked_scalar!($kind, $scalar);)*
                $($check;)?
                // Collected from an iterator: a call without slot lists allocates nothing.
                let slots = [$(slot_entry!($presence, $keras, $slot)),+].into_iter().flatten().collect();
                let call = Call {
                    params,
                    grads: Some(grads),
                    slots,
                    learning_rate: $lr,
                    options,
                    names: Names(names),
                    mode: Mode::Update,
                };
                call.run(py, &$hyper)
            }
        )+

        /// Each rule function's arguments in order.
        const RULES: &[(&str, &[Param])] = &[$(
            (stringify!($name), &[
                Param::new("params", "params"),
                Param::new("grads", "grads"),
                $(Param { slot: Some($keras), ..Param::new(stringify!($slot), slot_kind!($presence)) },)+
                Param::new(stringify!($lr), "real"),
                $(Param {
                    default: scalar_default!($($default)?),
                    ..Param::new(stringify!($scalar), stringify!($kind))
                },)*
                Param { default: ArgDefault::None, ..Param::new("options", "options") },
                Param { default: ArgDefault::None, ..Param::new("names", "names") },
            ]),
        )+];

        /// Adds every rule function to the native module (so `lib.rs` lists none of them).
        pub fn register(m: &Bound<'_, pyo3::types::PyModule>) -> PyResult<()> {
            use pyo3::types::PyModuleMethods;
            $(m.add_function(wrap_pyfunction!($name, m)?)?;)+
            Ok(())
        }
    };
}

rules! {
    /// SGD (keras/src/optimizers/sgd.py). `momentums` is None when momentum == 0.
    fn sgd(momentums: optional "momentum"; learning_rate: real, momentum: real, nesterov: bool)
    where {
        if (momentum != 0.0) != momentums.is_some() {
            return Err(
                Error::value_error("`momentums` must be given exactly when momentum != 0").into(),
            );
        }
    } => SgdParams { learning_rate, momentum, nesterov };

    /// Adam / AdamW (keras/src/optimizers/adam.py). `iterations` is the count before this step
    /// (t = iterations + 1); `velocity_hats` is None unless amsgrad.
    fn adam(
        momentums: required "momentum",
        velocities: required "velocity",
        velocity_hats: optional "velocity_hat";
        learning_rate: real, beta_1: real, beta_2: real, epsilon: real, iterations: int,
    ) => AdamParams {
        learning_rate, beta_1, beta_2, epsilon, iterations, amsgrad: velocity_hats.is_some()
    };

    /// RMSprop (rmsprop.py). `momentums` only if momentum > 0, `average_gradients` only if
    /// centered.
    fn rmsprop(
        velocities: required "velocity",
        momentums: optional "momentum",
        average_gradients: optional "average_gradient";
        learning_rate: real, rho: real, momentum: real, epsilon: real,
    ) where {
        if (momentum > 0.0) != momentums.is_some() {
            return Err(
                Error::value_error("`momentums` must be given exactly when momentum > 0").into(),
            );
        }
    } => RmsPropParams {
        learning_rate, rho, momentum, epsilon, centered: average_gradients.is_some()
    };

    /// Adagrad (adagrad.py).
    fn adagrad(accumulators: required "accumulator"; learning_rate: real, epsilon: real)
        => AdagradParams { learning_rate, epsilon };

    /// Adadelta (adadelta.py).
    fn adadelta(
        accumulated_grads: required "accumulated_grad",
        accumulated_delta_vars: required "accumulated_delta_var";
        learning_rate: real, rho: real, epsilon: real,
    ) => AdadeltaParams { learning_rate, rho, epsilon };

    /// Adamax (adamax.py). `iterations` is the count before this step.
    fn adamax(
        momentums: required "momentum",
        norms: required "norm";
        learning_rate: real, beta_1: real, beta_2: real, epsilon: real, iterations: int,
    ) => AdamaxParams { learning_rate, beta_1, beta_2, epsilon, iterations };

    /// Nadam (nadam.py). `u_product` is the momentum-cache product already multiplied by this
    /// step's factor (the caller keeps it, in the dtype of the first variable, as Keras does);
    /// `schedule_decay` scales the cache exponents (1 in Keras 3, Keras 2's schedule_decay).
    fn nadam(
        momentums: required "momentum",
        velocities: required "velocity";
        learning_rate: real, beta_1: real, beta_2: real, epsilon: real, iterations: int,
        u_product: real, schedule_decay: real = 1.0,
    ) => NadamParams {
        learning_rate, beta_1, beta_2, epsilon, iterations, u_product, schedule_decay
    };

    /// Lion (lion.py).
    fn lion(momentums: required "momentum"; learning_rate: real, beta_1: real, beta_2: real)
        => LionParams { learning_rate, beta_1, beta_2 };

    /// FTRL (ftrl.py).
    fn ftrl(
        accumulators: required "accumulator",
        linears: required "linear";
        learning_rate: real, learning_rate_power: real, l1_regularization_strength: real,
        l2_regularization_strength: real, l2_shrinkage_regularization_strength: real, beta: real,
    ) => FtrlParams {
        learning_rate,
        learning_rate_power,
        l1_regularization_strength,
        l2_regularization_strength,
        l2_shrinkage_regularization_strength,
        beta,
    };

    /// Lamb (lamb.py): Adam's moments with a per-tensor trust ratio |w| / |r|, computed by a
    /// deterministic read-only pass before the update pass. `iterations` is the count before
    /// this step.
    fn lamb(
        momentums: required "momentum",
        velocities: required "velocity";
        learning_rate: real, beta_1: real, beta_2: real, epsilon: real, iterations: int,
    ) => LambParams { learning_rate, beta_1, beta_2, epsilon, iterations };

    /// ScheduleFreeAdamW (schedule_free_adamw.py): the parameters hold y, `momentums` holds z
    /// (initialised to a copy of the parameters), `velocities` the second moment. The warmup
    /// factor min(t / warmup_steps, 1) is applied natively.
    fn schedule_free_adamw(
        momentums: required "momentum",
        velocities: required "velocity";
        learning_rate: real, beta_1: real, beta_2: real, epsilon: real, warmup_steps: int,
        iterations: int,
    ) => ScheduleFreeParams { learning_rate, beta_1, beta_2, epsilon, warmup_steps, iterations };
}

/// The declaration of every update-rule function: `{name: [{"name", "kind", "slot"?,
/// "default"?}, ...]}` in argument order (see `_native.pyi`).
#[pyfunction]
pub fn rule_signatures(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    let out = PyDict::new(py);
    for (name, params) in RULES {
        let list = PyList::empty(py);
        for p in *params {
            let d = PyDict::new(py);
            d.set_item("name", p.name)?;
            d.set_item("kind", p.kind)?;
            if let Some(slot) = p.slot {
                d.set_item("slot", slot)?;
            }
            match p.default {
                ArgDefault::Required => {}
                ArgDefault::None => d.set_item("default", py.None())?,
                ArgDefault::Real(x) => d.set_item("default", x)?,
            }
            list.append(d)?;
        }
        out.set_item(name, list)?;
    }
    Ok(out)
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
            lazy: false,
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
    call.run(py, &Roofline { slots: 0 })
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
    call.run(py, &Roofline { slots: lists.len() })
}
