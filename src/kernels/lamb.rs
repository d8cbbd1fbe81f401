//! Lamb, as `keras/src/optimizers/lamb.py`, with `t = iterations + 1`:
//!
//! ```text
//! m = m + (g - m) * (1 - beta_1)
//! v = v + (g^2 - v) * (1 - beta_2)
//! r = (m / (1 - beta_1^t)) / (sqrt(v / (1 - beta_2^t)) + epsilon)
//! ratio = |w| / |r| if both norms > 0, else 1      (whole-tensor norms; w after decay)
//! w = w - (ratio * lr) * r
//! ```
//! The divisions by the bias corrections are multiplications by their reciprocals, as XLA
//! (Keras's JAX backend) computes them. The norms need the whole tensor before any element
//! changes, so Lamb runs a read-only reduction pass (`reduce`) and then the update pass with
//! the tensor's ratio.

use super::reduce::sum_squares;
use super::{block, Hyperparameters, Real, Rule};

pub struct Lamb<T> {
    lr: T,
    one_minus_beta_1: T,
    one_minus_beta_2: T,
    inv_bias_1: T,
    inv_bias_2: T,
    epsilon: T,
}

/// The hyperparameters of `Lamb` as the caller passes them (f64, u64); `build` rounds them to
/// the rule's float type.
#[derive(Clone, Copy, Debug)]
pub struct LambParams {
    pub learning_rate: f64,
    pub beta_1: f64,
    pub beta_2: f64,
    pub epsilon: f64,
    pub iterations: u64,
}

impl Hyperparameters for LambParams {
    type Rule<T: Real> = Lamb<T>;

    fn build<T: Real>(&self) -> Lamb<T> {
        let t = T::from_f64((self.iterations as f64) + 1.0);
        Lamb {
            lr: T::from_f64(self.learning_rate),
            one_minus_beta_1: T::from_f64(1.0 - self.beta_1),
            one_minus_beta_2: T::from_f64(1.0 - self.beta_2),
            inv_bias_1: T::ONE / (T::ONE - T::from_f64(self.beta_1).pow(t)),
            inv_bias_2: T::ONE / (T::ONE - T::from_f64(self.beta_2).pow(t)),
            epsilon: T::from_f64(self.epsilon),
        }
    }
}

impl<T: Real> Lamb<T> {
    /// New `m`, new `v` and the update direction `r` of one element.
    #[inline(always)]
    fn moments(&self, g: T, m: T, v: T) -> (T, T, T) {
        let m = m + (g - m) * self.one_minus_beta_1;
        let v = v + (g * g - v) * self.one_minus_beta_2;
        let r = (m * self.inv_bias_1) / ((v * self.inv_bias_2).sqrt() + self.epsilon);
        (m, v, r)
    }
}

/// Elements per chunk of the reduction's scratch buffer.
const SCRATCH: usize = 256;

impl<T: Real> Rule<T> for Lamb<T> {
    fn slots(&self) -> usize {
        2
    }

    fn sums(&self) -> usize {
        2
    }

    #[inline(always)]
    fn reduce(&self, p: &[T], g: &[T], slots: &[&[T]], sums: &mut [f64]) {
        let n = p.len();
        if let ([m, v], [sw, sr]) = (slots, sums) {
            *sw += sum_squares(p);
            let mut r = [T::ZERO; SCRATCH];
            let mut start = 0;
            while start < n {
                let k = SCRATCH.min(n - start);
                for i in 0..k {
                    r[i] = self.moments(g[start + i], m[start + i], v[start + i]).2;
                }
                *sr += sum_squares(&r[..k]);
                start += k;
            }
        }
    }

    fn tensor_scalar(&self, sums: &[f64]) -> T {
        let (w_norm, r_norm) = match sums {
            [w, r] => (T::from_f64(*w).sqrt(), T::from_f64(*r).sqrt()),
            _ => return T::ONE,
        };
        let ratio = if w_norm > T::ZERO && r_norm > T::ZERO {
            w_norm / r_norm
        } else {
            T::ONE
        };
        ratio * self.lr
    }

    fn update(&self, p: &mut [T], g: &[T], slots: &mut [&mut [T]]) {
        self.update_with(p, g, slots, self.lr);
    }

    /// `scale` is `ratio * lr`.
    #[inline(always)]
    fn update_with(&self, p: &mut [T], g: &[T], slots: &mut [&mut [T]], scale: T) {
        let (p, g, [m, v]) = block(p, g, slots);
        for i in 0..p.len() {
            let (mi, vi, r) = self.moments(g[i], m[i], v[i]);
            m[i] = mi;
            v[i] = vi;
            p[i] -= scale * r;
        }
    }
}
