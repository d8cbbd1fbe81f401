//! ferroptim's native core: Keras optimizer update rules as fused, SIMD, multithreaded
//! kernels over NumPy buffers. `kernels` is pure Rust; `py` is the only code that touches
//! Python; this file only registers the module.

pub mod error;
pub mod kernels;
#[cfg(feature = "python")]
pub mod py;

#[cfg(feature = "python")]
#[pyo3::pymodule(gil_used = false)]
mod _native {
    #[pymodule_export]
    use crate::py::adafactor::adafactor;
    #[pymodule_export]
    use crate::py::functions::{
        adadelta, adagrad, adam, adamax, all_finite, check_disjoint, completed_calls, ema, ftrl,
        get_num_threads, gradient_sum_squares, lamb, lion, nadam, newton_schulz, rmsprop, roofline,
        schedule_free_adamw, set_num_threads, set_simd_level, sgd, simd_level, StepOptions,
    };
    #[pymodule_export]
    use crate::py::scalars::{cos_f32, cos_f64, log_f32, log_f64, pow_f32, pow_f64};

    #[pymodule_init]
    fn init(m: &pyo3::Bound<'_, pyo3::types::PyModule>) -> pyo3::PyResult<()> {
        use pyo3::types::PyModuleMethods;
        m.add("__version__", env!("CARGO_PKG_VERSION"))
    }
}
