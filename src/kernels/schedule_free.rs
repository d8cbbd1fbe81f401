//! Schedule-Free AdamW, as `keras/src/optimizers/schedule_free_adamw.py`. The variable holds
//! y, the interpolation point; z is the `momentum` slot (initialised to a copy of the
//! variable); the averaged sequence x is recovered from y and z. With `t = iterations + 1`
//! and every scalar in the variable's dtype:
//!
//! ```text
//! lr    = lr * min(t / warmup_steps, 1)            (only if warmup_steps > 0)
//! v     = v + (g^2 - v) * (1 - beta_2)
//! z_new = z - (lr * g) / (sqrt(v / (1 - beta_2^t)) + epsilon)
//! x_old = (y - (1 - beta_1) * z) / beta_1          (with the old z)
//! x_new = (1 - 1/t) * x_old + (1/t) * z_new
//! y     = (1 - beta_1) * z_new + beta_1 * x_new
//! ```
//! Slots: momentum (z), velocity (v). Divisions by the scalars `1 - beta_2^t` and `beta_1`
//! are multiplications by their reciprocals, as XLA (Keras's JAX backend) computes them.

use super::{block, Hyperparameters, Real, Rule};

pub struct ScheduleFree<T> {
    lr: T,
    beta_1: T,
    one_minus_beta_1: T,
    one_minus_beta_2: T,
    bias_2: T,
    epsilon: T,
    weight: T,
    one_minus_weight: T,
}

/// The hyperparameters of `ScheduleFree` as the caller passes them (f64, u64); `build` rounds them to
/// the rule's float type.
#[derive(Clone, Copy, Debug)]
pub struct ScheduleFreeParams {
    pub learning_rate: f64,
    pub beta_1: f64,
    pub beta_2: f64,
    pub epsilon: f64,
    pub warmup_steps: u64,
    pub iterations: u64,
}

impl Hyperparameters for ScheduleFreeParams {
    type Rule<T: Real> = ScheduleFree<T>;

    fn build<T: Real>(&self) -> ScheduleFree<T> {
        let t = T::from_f64((self.iterations as f64) + 1.0);
        let mut lr = T::from_f64(self.learning_rate);
        if self.warmup_steps > 0 {
            let ratio = t / T::from_f64(self.warmup_steps as f64);
            lr = lr * if ratio < T::ONE { ratio } else { T::ONE };
        }
        let (b1, b2) = (T::from_f64(self.beta_1), T::from_f64(self.beta_2));
        let weight = T::ONE / t;
        ScheduleFree {
            lr,
            beta_1: b1,
            one_minus_beta_1: T::ONE - b1,
            one_minus_beta_2: T::ONE - b2,
            bias_2: T::ONE - b2.pow(t),
            epsilon: T::from_f64(self.epsilon),
            weight,
            one_minus_weight: T::ONE - weight,
        }
    }
}

impl<T: Real> Rule<T> for ScheduleFree<T> {
    fn slots(&self) -> usize {
        2
    }

    #[inline(always)]
    fn update(&self, p: &mut [T], g: &[T], slots: &mut [&mut [T]]) {
        let (p, g, [z, v]) = block(p, g, slots);
        let (lr, b1, c1, c2) = (
            self.lr,
            self.beta_1,
            self.one_minus_beta_1,
            self.one_minus_beta_2,
        );
        let (eps, w, one_minus_w) = (self.epsilon, self.weight, self.one_minus_weight);
        let (inv_bias_2, inv_beta_1) = (T::ONE / self.bias_2, T::ONE / b1);
        for i in 0..p.len() {
            let z_old = z[i];
            v[i] += (g[i] * g[i] - v[i]) * c2;
            let denom = (v[i] * inv_bias_2).sqrt() + eps;
            z[i] -= (lr * g[i]) / denom;
            let x_old = (p[i] - c1 * z_old) * inv_beta_1;
            let x_new = one_minus_w * x_old + w * z[i];
            p[i] = c1 * z[i] + b1 * x_new;
        }
    }
}
