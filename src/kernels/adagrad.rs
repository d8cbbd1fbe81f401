//! Adagrad, as `keras/src/optimizers/adagrad.py` (epsilon inside the square root):
//!
//! ```text
//! acc = acc + g^2
//! w = w - (lr * g) / sqrt(acc + epsilon)
//! ```

use super::{block, Hyperparameters, Real, Rule};

pub struct Adagrad<T> {
    lr: T,
    epsilon: T,
}

/// The hyperparameters of `Adagrad` as the caller passes them (f64, u64); `build` rounds them to
/// the rule's float type.
#[derive(Clone, Copy, Debug)]
pub struct AdagradParams {
    pub learning_rate: f64,
    pub epsilon: f64,
}

impl Hyperparameters for AdagradParams {
    type Rule<T: Real> = Adagrad<T>;

    fn build<T: Real>(&self) -> Adagrad<T> {
        Adagrad {
            lr: T::from_f64(self.learning_rate),
            epsilon: T::from_f64(self.epsilon),
        }
    }
}

impl<T: Real> Rule<T> for Adagrad<T> {
    fn slots(&self) -> usize {
        1
    }

    /// `acc + 0 * 0` is `acc`, and `w - (lr * 0) / sqrt(acc + epsilon)` is `w` while
    /// `acc + epsilon > 0`.
    fn rows_only(&self) -> bool {
        true
    }

    #[inline(always)]
    fn update(&self, p: &mut [T], g: &[T], slots: &mut [&mut [T]]) {
        let (p, g, [acc]) = block(p, g, slots);
        let (lr, eps) = (self.lr, self.epsilon);
        for i in 0..p.len() {
            acc[i] += g[i] * g[i];
            p[i] -= (lr * g[i]) / (acc[i] + eps).sqrt();
        }
    }
}
