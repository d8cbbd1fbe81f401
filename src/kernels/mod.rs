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
pub mod rows;
pub mod schedule_free;
pub mod sgd;
pub mod simd;
pub mod transform;
#[cfg(test)]
mod xorshift;

pub use driver::{gradient_sum_squares, run, Grad, Mode, Tensor};
pub use prologue::{Clip, Prologue};
pub use real::Real;
pub use rows::Rows;

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
/// gradients and one mutable slice per slot, all of the same length. Implementations take
/// them apart with `block` and loop over plain slices, so the compiler vectorizes them for
/// every instruction set the driver compiles the loop for; they must be `#[inline(always)]`
/// so that happens inside the driver's `#[target_feature]` functions.
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

    /// True if a zero gradient leaves an element and its slots exactly as they are (plain SGD,
    /// Adagrad): a row-sparse gradient then updates its rows only, as Keras's scatter updates
    /// do, and that equals the dense step. False where a zero gradient still changes the state
    /// (moments that decay), which then runs over the whole tensor unless the call is lazy.
    fn rows_only(&self) -> bool {
        false
    }

    /// `update` with the tensor's scalar from `tensor_scalar`.
    #[inline(always)]
    fn update_with(&self, p: &mut [T], g: &[T], slots: &mut [&mut [T]], _scalar: T) {
        self.update(p, g, slots);
    }
}

/// A rule's operands for one block: the parameters, the gradients cut to the parameters'
/// length, and the `K` slots as an array of slices of that length, which the rule names by
/// pattern:
///
/// ```text
/// let (p, g, [m, v]) = block(p, g, slots);
/// for i in 0..p.len() { ... m[i] ... }
/// ```
///
/// Every slice having exactly `p.len()` elements is what lets the compiler drop the bounds
/// checks of the element loop and vectorize it. The bindings check the number of slot lists
/// against `Rule::slots` and the driver hands every operand the block's length; if either
/// were off, the block is empty and the rule writes nothing rather than panic.
#[inline(always)]
pub fn block<'a, T, const K: usize>(
    p: &'a mut [T],
    g: &'a [T],
    slots: &'a mut [&mut [T]],
) -> (&'a mut [T], &'a [T], [&'a mut [T]; K]) {
    let n = p.len();
    if let (Some(g), Ok(slots)) = (g.get(..n), <&mut [&mut [T]; K]>::try_from(slots)) {
        if slots.iter().all(|s| s.len() >= n) {
            return (p, g, slots.each_mut().map(|s| &mut s[..n]));
        }
    }
    (&mut [], &[], std::array::from_fn(|_| Default::default()))
}
