//! Adamax, as `keras/src/optimizers/adamax.py`, with `t = iterations + 1`:
//!
//! ```text
//! m = m + (g - m) * (1 - beta_1)
//! u = max(beta_2 * u, |g|)
//! w = w - (lr * m) / ((1 - beta_1^t) * (u + epsilon))
//! ```
//! Slots: momentum, norm.

use super::real::max_nan;
use super::{block, Hyperparameters, Real, Rule};

pub struct Adamax<T> {
    lr: T,
    one_minus_beta_1: T,
    beta_2: T,
    bias: T,
    epsilon: T,
}

/// The hyperparameters of `Adamax` as the caller passes them (f64, u64); `build` rounds them to
/// the rule's float type.
#[derive(Clone, Copy, Debug)]
pub struct AdamaxParams {
    pub learning_rate: f64,
    pub beta_1: f64,
    pub beta_2: f64,
    pub epsilon: f64,
    pub iterations: u64,
}

impl Hyperparameters for AdamaxParams {
    type Rule<T: Real> = Adamax<T>;

    fn build<T: Real>(&self) -> Adamax<T> {
        let t = T::from_f64((self.iterations as f64) + 1.0);
        Adamax {
            lr: T::from_f64(self.learning_rate),
            one_minus_beta_1: T::from_f64(1.0 - self.beta_1),
            beta_2: T::from_f64(self.beta_2),
            bias: T::ONE - T::from_f64(self.beta_1).pow(t),
            epsilon: T::from_f64(self.epsilon),
        }
    }
}

impl<T: Real> Rule<T> for Adamax<T> {
    fn slots(&self) -> usize {
        2
    }

    #[inline(always)]
    fn update(&self, p: &mut [T], g: &[T], slots: &mut [&mut [T]]) {
        let (p, g, [m, u]) = block(p, g, slots);
        let (lr, c1, b2, bias, eps) = (
            self.lr,
            self.one_minus_beta_1,
            self.beta_2,
            self.bias,
            self.epsilon,
        );
        for i in 0..p.len() {
            m[i] += (g[i] - m[i]) * c1;
            u[i] = max_nan(b2 * u[i], g[i].abs());
            p[i] -= (lr * m[i]) / (bias * (u[i] + eps));
        }
    }
}
