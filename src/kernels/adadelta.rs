//! Adadelta, as `keras/src/optimizers/adadelta.py` (epsilon inside both roots; the old
//! accumulated update meets the new accumulated gradient):
//!
//! ```text
//! Eg  = rho * Eg + (1 - rho) * g^2
//! d   = -(sqrt(Edx + epsilon) * g) / sqrt(Eg + epsilon)
//! Edx = rho * Edx + (1 - rho) * d^2
//! w   = w + lr * d
//! ```
//! Slots: accumulated_grad, accumulated_delta_var.

use super::{block, Hyperparameters, Real, Rule};

pub struct Adadelta<T> {
    lr: T,
    rho: T,
    one_minus_rho: T,
    epsilon: T,
}

/// The hyperparameters of `Adadelta` as the caller passes them (f64, u64); `build` rounds them to
/// the rule's float type.
#[derive(Clone, Copy, Debug)]
pub struct AdadeltaParams {
    pub learning_rate: f64,
    pub rho: f64,
    pub epsilon: f64,
}

impl Hyperparameters for AdadeltaParams {
    type Rule<T: Real> = Adadelta<T>;

    fn build<T: Real>(&self) -> Adadelta<T> {
        Adadelta {
            lr: T::from_f64(self.learning_rate),
            rho: T::from_f64(self.rho),
            one_minus_rho: T::from_f64(1.0 - self.rho),
            epsilon: T::from_f64(self.epsilon),
        }
    }
}

impl<T: Real> Rule<T> for Adadelta<T> {
    fn slots(&self) -> usize {
        2
    }

    #[inline(always)]
    fn update(&self, p: &mut [T], g: &[T], slots: &mut [&mut [T]]) {
        let (p, g, [eg, edx]) = block(p, g, slots);
        let (lr, rho, c, eps) = (self.lr, self.rho, self.one_minus_rho, self.epsilon);
        for i in 0..p.len() {
            eg[i] = rho * eg[i] + c * (g[i] * g[i]);
            let d = -(((edx[i] + eps).sqrt() * g[i]) / (eg[i] + eps).sqrt());
            edx[i] = rho * edx[i] + c * (d * d);
            p[i] += lr * d;
        }
    }
}
