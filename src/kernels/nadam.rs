//! Nadam, as `keras/src/optimizers/nadam.py`, with `t = iterations + 1` and the momentum
//! cache product `u_product` (optimizer state kept by the caller, already multiplied by
//! `u_t` for this step):
//!
//! ```text
//! u_t   = beta_1 * (1 - 0.5 * 0.96^t);   u_t1 = beta_1 * (1 - 0.5 * 0.96^(t+1))
//! P_t   = u_product;                     P_t1 = P_t * u_t1
//! m = m + (g - m) * (1 - beta_1)
//! v = v + (g^2 - v) * (1 - beta_2)
//! m_hat = (u_t1 * m) / (1 - P_t1) + ((1 - u_t) * g) / (1 - P_t)
//! v_hat = v / (1 - beta_2^t)
//! w = w - (m_hat * lr) / (sqrt(v_hat) + epsilon)
//! ```
//! Here Keras casts `beta_1`, `beta_2` and 0.96 to the variable's dtype first, so `1 - beta`
//! is computed in that dtype (unlike Adam). The three divisions by per-step scalars are done
//! as XLA (Keras's JAX backend, where Keras's golden values come from) does them, as a
//! multiplication by the scalar's reciprocal: that reproduces Keras's numbers to the bit and
//! leaves one divide and one square root per element, like Adam. Keras 2's `schedule_decay`
//! `s` replaces the exponents `t` by `t * s` in the two caches.

use super::{block, Hyperparameters, Real, Rule};

pub struct Nadam<T> {
    lr: T,
    one_minus_beta_1: T,
    one_minus_beta_2: T,
    u_t: T,
    u_t1: T,
    u_product: T,
    u_product_next: T,
    bias_2: T,
    epsilon: T,
}

/// The hyperparameters of `Nadam` as the caller passes them (f64, u64); `build` rounds them to
/// the rule's float type.
///
/// `schedule_decay` is 1 for Keras 3 (and 0.004 for Keras 2's default).
#[derive(Clone, Copy, Debug)]
pub struct NadamParams {
    pub learning_rate: f64,
    pub beta_1: f64,
    pub beta_2: f64,
    pub epsilon: f64,
    pub iterations: u64,
    pub u_product: f64,
    pub schedule_decay: f64,
}

impl Hyperparameters for NadamParams {
    type Rule<T: Real> = Nadam<T>;

    fn build<T: Real>(&self) -> Nadam<T> {
        let t = T::from_f64((self.iterations as f64) + 1.0);
        let t1 = T::from_f64((self.iterations as f64) + 2.0);
        let (b1, b2) = (T::from_f64(self.beta_1), T::from_f64(self.beta_2));
        let decay = T::from_f64(0.96);
        let half = T::from_f64(0.5);
        let (e, e1) = if self.schedule_decay == 1.0 {
            (t, t1)
        } else {
            let s = T::from_f64(self.schedule_decay);
            (t * s, t1 * s)
        };
        let u_t = b1 * (T::ONE - half * decay.pow(e));
        let u_t1 = b1 * (T::ONE - half * decay.pow(e1));
        let u_product = T::from_f64(self.u_product);
        Nadam {
            lr: T::from_f64(self.learning_rate),
            one_minus_beta_1: T::ONE - b1,
            one_minus_beta_2: T::ONE - b2,
            u_t,
            u_t1,
            u_product,
            u_product_next: u_product * u_t1,
            bias_2: T::ONE - b2.pow(t),
            epsilon: T::from_f64(self.epsilon),
        }
    }
}

impl<T: Real> Rule<T> for Nadam<T> {
    fn slots(&self) -> usize {
        2
    }

    #[inline(always)]
    fn update(&self, p: &mut [T], g: &[T], slots: &mut [&mut [T]]) {
        let (p, g, [m, v]) = block(p, g, slots);
        let (lr, c1, c2, eps) = (
            self.lr,
            self.one_minus_beta_1,
            self.one_minus_beta_2,
            self.epsilon,
        );
        let (u_t1, one_minus_u_t) = (self.u_t1, T::ONE - self.u_t);
        let inv_next = T::ONE / (T::ONE - self.u_product_next);
        let inv = T::ONE / (T::ONE - self.u_product);
        let inv_bias_2 = T::ONE / self.bias_2;
        for i in 0..p.len() {
            m[i] += (g[i] - m[i]) * c1;
            v[i] += (g[i] * g[i] - v[i]) * c2;
            let m_hat = (u_t1 * m[i]) * inv_next + (one_minus_u_t * g[i]) * inv;
            let v_hat = v[i] * inv_bias_2;
            p[i] -= (m_hat * lr) / (v_hat.sqrt() + eps);
        }
    }
}
