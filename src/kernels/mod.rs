//! Pure Rust update rules and the multi-tensor driver that runs them. Nothing here knows
//! about Python: the bindings in `crate::py` validate NumPy buffers and hand this module raw
//! views (`layout::Operand`) that are guaranteed disjoint and correctly sized.

pub mod adadelta;
pub mod adagrad;
pub mod adam;
pub mod adamax;
pub mod driver;
pub mod ftrl;
pub mod layout;
pub mod lion;
pub mod nadam;
pub mod pool;
pub mod prologue;
pub mod real;
pub mod reduce;
pub mod rmsprop;
pub mod roofline;
pub mod sgd;
pub mod simd;

pub use driver::{run, Mode, Tensor};
pub use prologue::{Clip, Prologue};
pub use real::Real;

/// One optimizer update rule, applied element-wise to a block of one tensor.
///
/// `update` receives the block's parameters, its (already unscaled, averaged, clipped)
/// gradients and one mutable slice per slot, all of the same length. Implementations loop
/// over plain slices so the compiler vectorizes them for every instruction set the driver
/// compiles the loop for; they must be `#[inline(always)]` so that happens inside the
/// driver's `#[target_feature]` functions.
pub trait Rule<T: Real>: Sync {
    /// Number of slot slices `update` expects.
    fn slots(&self) -> usize;
    fn update(&self, p: &mut [T], g: &[T], slots: &mut [&mut [T]]);
}
