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
    use crate::py::checks::{all_finite, check_disjoint};
    #[pymodule_export]
    use crate::py::gradients::{gradient_sum_squares, transform_gradients};
    #[pymodule_export]
    use crate::py::matrices::newton_schulz;
    #[pymodule_export]
    use crate::py::options::StepOptions;
    #[pymodule_export]
    use crate::py::rules::{ema, roofline, rule_signatures};
    #[pymodule_export]
    use crate::py::runtime::{
        completed_calls, get_num_threads, set_num_threads, set_simd_level, simd_level,
    };
    #[pymodule_export]
    use crate::py::scalars::{cos_f32, cos_f64, log_f32, log_f64, pow_f32, pow_f64};

    #[pymodule_init]
    fn init(m: &pyo3::Bound<'_, pyo3::types::PyModule>) -> pyo3::PyResult<()> {
        use pyo3::types::PyModuleMethods;
        // The update rules, from their one declaration in `py::rules`.
        crate::py::rules::register(m)?;
        m.add("__version__", env!("CARGO_PKG_VERSION"))
    }
}
