//! Pure Rust update rules and the multi-tensor driver that runs them. Nothing here knows
//! about Python: the bindings in `crate::py` validate NumPy buffers and hand this module raw
//! views (`layout::Operand`) that are guaranteed disjoint and correctly sized.

pub mod adadelta;
pub mod adafactor;
pub mod adagrad;
pub mod adam;
pub mod adamax;
pub mod crmath;
pub mod driver;
pub mod ftrl;
pub mod lamb;
pub mod layout;
pub mod lion;
pub mod nadam;
pub mod newton_schulz;
pub mod pool;
pub mod prologue;
pub mod real;
pub mod reduce;
pub mod rmsprop;
pub mod roofline;
pub mod schedule_free;
pub mod sgd;
pub mod simd;
pub mod transform;

pub use driver::{gradient_sum_squares, run, Grad, Mode, Tensor};
pub use prologue::{Clip, Prologue};
pub use real::Real;

/// A rule's hyperparameters as Python passes them (f64 and u64 scalars, flags): one struct
/// beside each kernel, from which the rule is built for either float type. Every scalar is
/// rounded once to the parameters' dtype by `build`, as Keras rounds a Python float when it
/// meets a variable, so one value serves a float32 group and a float64 group alike.
pub trait Hyperparameters: Sync {
    /// The rule these hyperparameters make, for each float type.
    type Rule<T: Real>: Rule<T> + Send;

    #[must_use]
    fn build<T: Real>(&self) -> Self::Rule<T>;
}

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

    /// Number of per-tensor sums the rule needs before it can update (Lamb's norms), at most
    /// `driver::MAX_SUMS`; 0 for element-wise rules, which then never see `reduce` or
    /// `tensor_scalar`.
    fn sums(&self) -> usize {
        0
    }

    /// Adds one block's contributions to `sums`, writing nothing: `p` is the parameter after
    /// weight decay, `g` the final gradient, `slots` the slots before this step. The driver
    /// calls it on fixed blocks in a fixed order, so the sums are deterministic.
    fn reduce(&self, _p: &[T], _g: &[T], _slots: &[&[T]], _sums: &mut [f64]) {}

    /// Turns a tensor's sums into the scalar that `update_with` receives.
    fn tensor_scalar(&self, _sums: &[f64]) -> T {
        T::ONE
    }

    /// `update` with the tensor's scalar from `tensor_scalar`.
    #[inline(always)]
    fn update_with(&self, p: &mut [T], g: &[T], slots: &mut [&mut [T]], _scalar: T) {
        self.update(p, g, slots);
    }
}
