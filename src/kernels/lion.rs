//! Lion, as `keras/src/optimizers/lion.py` (`1 - beta` computed in the variable's dtype):
//!
//! ```text
//! w = w - lr * sign(m * beta_1 + g * (1 - beta_1))
//! m = m * beta_2 + g * (1 - beta_2)
//! ```
//! `sign(0) = 0` and `sign(NaN) = NaN`, as `numpy.sign`.

use super::{block, Hyperparameters, Real, Rule};

pub struct Lion<T> {
    lr: T,
    beta_1: T,
    one_minus_beta_1: T,
    beta_2: T,
    one_minus_beta_2: T,
}

/// The hyperparameters of `Lion` as the caller passes them (f64, u64); `build` rounds them to
/// the rule's float type.
#[derive(Clone, Copy, Debug)]
pub struct LionParams {
    pub learning_rate: f64,
    pub beta_1: f64,
    pub beta_2: f64,
}

impl Hyperparameters for LionParams {
    type Rule<T: Real> = Lion<T>;

    fn build<T: Real>(&self) -> Lion<T> {
        let (b1, b2) = (T::from_f64(self.beta_1), T::from_f64(self.beta_2));
        Lion {
            lr: T::from_f64(self.learning_rate),
            beta_1: b1,
            one_minus_beta_1: T::ONE - b1,
            beta_2: b2,
            one_minus_beta_2: T::ONE - b2,
        }
    }
}

#[inline(always)]
fn sign<T: Real>(x: T) -> T {
    if x > T::ZERO {
        T::ONE
    } else if x < T::ZERO {
        -T::ONE
    } else {
        // 0 stays 0 (and -0 stays -0); NaN stays NaN.
        x
    }
}

impl<T: Real> Rule<T> for Lion<T> {
    fn slots(&self) -> usize {
        1
    }

    #[inline(always)]
    fn update(&self, p: &mut [T], g: &[T], slots: &mut [&mut [T]]) {
        let (p, g, [m]) = block(p, g, slots);
        let (lr, b1, c1, b2, c2) = (
            self.lr,
            self.beta_1,
            self.one_minus_beta_1,
            self.beta_2,
            self.one_minus_beta_2,
        );
        for i in 0..p.len() {
            p[i] -= lr * sign(m[i] * b1 + g[i] * c1);
            m[i] = m[i] * b2 + g[i] * c2;
        }
    }
}
