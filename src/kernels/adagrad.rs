//! Adagrad, as `keras/src/optimizers/adagrad.py` (epsilon inside the square root):
//!
//! ```text
//! acc = acc + g^2
//! w = w - (lr * g) / sqrt(acc + epsilon)
//! ```

use super::{Real, Rule};

pub struct Adagrad<T> {
    lr: T,
    epsilon: T,
}

impl<T: Real> Adagrad<T> {
    #[must_use]
    pub fn new(learning_rate: f64, epsilon: f64) -> Self {
        Adagrad {
            lr: T::from_f64(learning_rate),
            epsilon: T::from_f64(epsilon),
        }
    }
}

impl<T: Real> Rule<T> for Adagrad<T> {
    fn slots(&self) -> usize {
        1
    }

    #[inline(always)]
    fn update(&self, p: &mut [T], g: &[T], slots: &mut [&mut [T]]) {
        let n = p.len();
        let g = &g[..n];
        let (lr, eps) = (self.lr, self.epsilon);
        if let [acc] = slots {
            let acc = &mut acc[..n];
            for i in 0..n {
                acc[i] += g[i] * g[i];
                p[i] -= (lr * g[i]) / (acc[i] + eps).sqrt();
            }
        }
    }
}
