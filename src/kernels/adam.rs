//! Adam (and AdamW, whose decoupled decay is the driver's weight-decay stage), as
//! `keras/src/optimizers/adam.py`, with `t = iterations + 1`:
//!
//! ```text
//! alpha = lr * sqrt(1 - beta_2^t) / (1 - beta_1^t)
//! m = m + (g - m) * (1 - beta_1)
//! v = v + (g^2 - v) * (1 - beta_2)
//! amsgrad: v_hat = max(v_hat, v); use v_hat for v below
//! w = w - (m * alpha) / (sqrt(v) + epsilon)
//! ```
//!
//! `epsilon` is the paper's "epsilon hat": it is added to the uncorrected `sqrt(v)`.
//! The powers are taken in the parameters' dtype and `1 - beta` in double then rounded, as
//! Keras computes them.

use super::real::max_nan;
use super::{block, Hyperparameters, Real, Rule};

pub struct Adam<T> {
    alpha: T,
    one_minus_beta_1: T,
    one_minus_beta_2: T,
    epsilon: T,
    amsgrad: bool,
}

/// The hyperparameters of `Adam` as the caller passes them (f64, u64); `build` rounds them to
/// the rule's float type.
///
/// `iterations` is the optimizer's count before this step.
#[derive(Clone, Copy, Debug)]
pub struct AdamParams {
    pub learning_rate: f64,
    pub beta_1: f64,
    pub beta_2: f64,
    pub epsilon: f64,
    pub iterations: u64,
    pub amsgrad: bool,
}

impl Hyperparameters for AdamParams {
    type Rule<T: Real> = Adam<T>;

    fn build<T: Real>(&self) -> Adam<T> {
        let lr = T::from_f64(self.learning_rate);
        let t = T::from_f64((self.iterations as f64) + 1.0);
        let beta_1_power = T::from_f64(self.beta_1).pow(t);
        let beta_2_power = T::from_f64(self.beta_2).pow(t);
        Adam {
            alpha: lr * (T::ONE - beta_2_power).sqrt() / (T::ONE - beta_1_power),
            one_minus_beta_1: T::from_f64(1.0 - self.beta_1),
            one_minus_beta_2: T::from_f64(1.0 - self.beta_2),
            epsilon: T::from_f64(self.epsilon),
            amsgrad: self.amsgrad,
        }
    }
}

impl<T: Real> Rule<T> for Adam<T> {
    fn slots(&self) -> usize {
        2 + usize::from(self.amsgrad)
    }

    #[inline(always)]
    fn update(&self, p: &mut [T], g: &[T], slots: &mut [&mut [T]]) {
        let (alpha, c1, c2, eps) = (
            self.alpha,
            self.one_minus_beta_1,
            self.one_minus_beta_2,
            self.epsilon,
        );
        if self.amsgrad {
            let (p, g, [m, v, v_hat]) = block(p, g, slots);
            for i in 0..p.len() {
                m[i] += (g[i] - m[i]) * c1;
                v[i] += (g[i] * g[i] - v[i]) * c2;
                v_hat[i] = max_nan(v_hat[i], v[i]);
                p[i] -= (m[i] * alpha) / (v_hat[i].sqrt() + eps);
            }
        } else {
            let (p, g, [m, v]) = block(p, g, slots);
            for i in 0..p.len() {
                m[i] += (g[i] - m[i]) * c1;
                v[i] += (g[i] * g[i] - v[i]) * c2;
                p[i] -= (m[i] * alpha) / (v[i].sqrt() + eps);
            }
        }
    }
}
