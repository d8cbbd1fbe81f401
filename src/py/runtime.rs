//! The process-wide runtime: thread count, SIMD level, and the per-thread count of completed
//! writing calls.

use super::args;
use crate::error::Error;
use crate::kernels::{pool, simd};
use pyo3::prelude::*;
use std::cell::Cell;

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

/// Sets the number of threads a step may use (1 to `pool::MAX_THREADS`).
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

/// The number of threads a step may use.
#[pyfunction]
#[must_use]
pub fn get_num_threads() -> usize {
    pool::num_threads()
}

/// The instruction set the kernels run with: "baseline", "avx2" or "avx512".
#[pyfunction]
#[must_use]
pub fn simd_level() -> &'static str {
    simd::current().name()
}

/// Chooses the instruction set ("auto" for the best this CPU supports).
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
