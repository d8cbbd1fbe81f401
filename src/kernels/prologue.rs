//! The cross-cutting parts of a step, fused into the update pass in Keras's order
//! (`keras/src/optimizers/base_optimizer.py`, `apply` and `_backend_apply_gradients`):
//!
//! 1. unscale: `g = g / loss_scale_factor`
//! 2. accumulation, on an update step: `g = (g + acc) / steps`, `acc = 0`
//!    (on other steps the driver only does `acc = acc + g`)
//! 3. clipping: `clipnorm` `(g * c) / max(norm, c)` per tensor, `global_clipnorm`
//!    `g * scale`, or `clipvalue` `clip(g, -c, c)`
//! 4. decoupled weight decay: `w = w - w * wd * lr`
//! 5. the rule's update
//! 6. EMA: `avg = m * avg + (1 - m) * w`, then `w = avg` on an overwrite step
//!
//! Each stage is a separate loop over a block that is already in L1, so every stage
//! vectorizes and memory is still crossed once.

use super::real::{clip, max_nan, Real};

/// Gradient clipping as configured (Keras's precedence is decided by the caller).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Clip<T> {
    None,
    /// Per-tensor norm clipping with this `clipnorm`.
    Norm(T),
    /// Clipping by the norm over all tensors of the call with this `global_clipnorm`, and
    /// `1 / global_clipnorm` computed in float64 and rounded once (Keras computes `1.0 / c`
    /// on the Python float).
    GlobalNorm(T, T),
    /// Element-wise clipping to `[-c, c]`.
    Value(T),
    /// `g * scale` with a global-norm scale the caller computed over several calls (a step
    /// whose variables span dtype groups), once, in float64: each call applies the same scale
    /// instead of deriving it from its own share of the norm, which can underflow.
    Scale(T),
}

/// Per-step scalars of the fused stages, already rounded to the parameters' dtype.
#[derive(Clone, Copy, Debug)]
pub struct Prologue<T> {
    pub loss_scale: Option<T>,
    /// `gradient_accumulation_steps` when the accumulators take part in this call.
    pub accumulation_steps: Option<T>,
    pub clip: Clip<T>,
    /// `(weight_decay, learning_rate)`.
    pub weight_decay: Option<(T, T)>,
    /// `(momentum, overwrite)`; the momentum is already 0 on the first step.
    pub ema: Option<(T, bool)>,
    /// Lazy updates of row-sparse gradients: only their rows take the rule (and the decay),
    /// whatever the rule does where the gradient is zero.
    pub lazy: bool,
}

impl<T: Real> Prologue<T> {
    #[must_use]
    pub fn none() -> Self {
        Prologue {
            loss_scale: None,
            accumulation_steps: None,
            clip: Clip::None,
            weight_decay: None,
            ema: None,
            lazy: false,
        }
    }

    /// True if the gradient reaches the rule exactly as the caller passed it.
    #[must_use]
    pub fn gradient_untouched(&self, clip_active: bool) -> bool {
        self.loss_scale.is_none() && self.accumulation_steps.is_none() && !clip_active
    }
}

#[inline(always)]
pub fn unscale<T: Real>(g: &mut [T], scale: T) {
    for x in g.iter_mut() {
        *x = *x / scale;
    }
}

/// `g = (g + acc) / steps`.
#[inline(always)]
pub fn average_accumulated<T: Real>(g: &mut [T], acc: &[T], steps: T) {
    let n = g.len().min(acc.len());
    let (g, acc) = (&mut g[..n], &acc[..n]);
    for i in 0..n {
        g[i] = (g[i] + acc[i]) / steps;
    }
}

/// `acc = g + acc`.
#[inline(always)]
pub fn accumulate<T: Real>(acc: &mut [T], g: &[T]) {
    let n = g.len().min(acc.len());
    let (acc, g) = (&mut acc[..n], &g[..n]);
    for i in 0..n {
        acc[i] = g[i] + acc[i];
    }
}

/// Keras's `_clip_by_norm`: `(g * c) / denominator`, `denominator = max(norm, c)`.
#[inline(always)]
pub fn clip_by_norm<T: Real>(g: &mut [T], c: T, denominator: T) {
    for x in g.iter_mut() {
        *x = (*x * c) / denominator;
    }
}

#[inline(always)]
pub fn scale<T: Real>(g: &mut [T], s: T) {
    for x in g.iter_mut() {
        *x = *x * s;
    }
}

#[inline(always)]
pub fn clip_value<T: Real>(g: &mut [T], c: T) {
    let lo = -c;
    for x in g.iter_mut() {
        *x = clip(*x, lo, c);
    }
}

/// `w = w - w * wd * lr`, in that order.
#[inline(always)]
pub fn weight_decay<T: Real>(w: &mut [T], wd: T, lr: T) {
    for x in w.iter_mut() {
        *x = *x - *x * wd * lr;
    }
}

/// `avg = m * avg + (1 - m) * w`; then `w = avg` if `overwrite`.
#[inline(always)]
pub fn ema<T: Real>(w: &mut [T], avg: &mut [T], m: T, overwrite: bool) {
    let n = w.len().min(avg.len());
    let (w, avg) = (&mut w[..n], &mut avg[..n]);
    let one_minus = T::ONE - m;
    for i in 0..n {
        avg[i] = m * avg[i] + one_minus * w[i];
    }
    if overwrite {
        w.copy_from_slice(avg);
    }
}

/// Denominator of Keras's `_clip_by_norm` from the tensor's sum of squares.
#[must_use]
pub fn norm_denominator<T: Real>(sum_squares: f64, c: T) -> T {
    let l2sum = T::from_f64(sum_squares);
    // Keras's two-tap `where`: sqrt only of a positive sum, so 0 (and NaN) pass through.
    let l2norm = if l2sum > T::ZERO { l2sum.sqrt() } else { l2sum };
    max_nan(l2norm, c)
}

/// Keras's `clip_by_global_norm` scale: `c * min(1/N, 1/c) + (N - N)`; NaN if N is not
/// finite. `inverse` is `1/c` as `Clip::GlobalNorm` carries it.
#[must_use]
pub fn global_norm_scale<T: Real>(sum_squares: f64, c: T, inverse: T) -> T {
    let n = T::from_f64(sum_squares).sqrt();
    let a = T::ONE / n;
    let b = inverse;
    // `min` that keeps NaN, as `ops.minimum`.
    let m = if a.is_nan() || a < b { a } else { b };
    // `n - n` is 0 for a finite norm and NaN otherwise: Keras's way to poison every gradient.
    #[allow(clippy::eq_op)]
    let poison = n - n;
    c * m + poison
}
