//! RMSprop, as `keras/src/optimizers/rmsprop.py` (no bias correction; epsilon inside the
//! square root):
//!
//! ```text
//! v = rho * v + (1 - rho) * g^2
//! centered: a = rho * a + (1 - rho) * g;  d = v - a^2 + epsilon
//! else:     d = v + epsilon
//! inc = (lr * g) / sqrt(d)
//! momentum > 0: mom = momentum * mom + inc;  w = w - mom
//! else:         w = w - inc
//! ```
//! Slots, in order: velocity, then momentum (if momentum > 0), then average_gradient (if
//! centered).

use super::{block, Hyperparameters, Real, Rule};

pub struct RmsProp<T> {
    lr: T,
    rho: T,
    one_minus_rho: T,
    momentum: Option<T>,
    centered: bool,
    epsilon: T,
}

/// The hyperparameters of `RmsProp` as the caller passes them (f64, u64); `build` rounds them to
/// the rule's float type.
#[derive(Clone, Copy, Debug)]
pub struct RmsPropParams {
    pub learning_rate: f64,
    pub rho: f64,
    pub momentum: f64,
    pub epsilon: f64,
    pub centered: bool,
}

impl Hyperparameters for RmsPropParams {
    type Rule<T: Real> = RmsProp<T>;

    fn build<T: Real>(&self) -> RmsProp<T> {
        RmsProp {
            lr: T::from_f64(self.learning_rate),
            rho: T::from_f64(self.rho),
            one_minus_rho: T::from_f64(1.0 - self.rho),
            momentum: (self.momentum > 0.0).then(|| T::from_f64(self.momentum)),
            centered: self.centered,
            epsilon: T::from_f64(self.epsilon),
        }
    }
}

impl<T: Real> Rule<T> for RmsProp<T> {
    fn slots(&self) -> usize {
        1 + usize::from(self.momentum.is_some()) + usize::from(self.centered)
    }

    #[inline(always)]
    fn update(&self, p: &mut [T], g: &[T], slots: &mut [&mut [T]]) {
        let (lr, rho, c, eps) = (self.lr, self.rho, self.one_minus_rho, self.epsilon);
        match (self.momentum, self.centered) {
            (None, false) => {
                let (p, g, [v]) = block(p, g, slots);
                for i in 0..p.len() {
                    v[i] = rho * v[i] + c * (g[i] * g[i]);
                    p[i] -= (lr * g[i]) / (v[i] + eps).sqrt();
                }
            }
            (Some(mu), false) => {
                let (p, g, [v, mom]) = block(p, g, slots);
                for i in 0..p.len() {
                    v[i] = rho * v[i] + c * (g[i] * g[i]);
                    let inc = (lr * g[i]) / (v[i] + eps).sqrt();
                    mom[i] = mu * mom[i] + inc;
                    p[i] -= mom[i];
                }
            }
            (None, true) => {
                let (p, g, [v, a]) = block(p, g, slots);
                for i in 0..p.len() {
                    v[i] = rho * v[i] + c * (g[i] * g[i]);
                    a[i] = rho * a[i] + c * g[i];
                    p[i] -= (lr * g[i]) / ((v[i] - a[i] * a[i]) + eps).sqrt();
                }
            }
            (Some(mu), true) => {
                let (p, g, [v, mom, a]) = block(p, g, slots);
                for i in 0..p.len() {
                    v[i] = rho * v[i] + c * (g[i] * g[i]);
                    a[i] = rho * a[i] + c * g[i];
                    let inc = (lr * g[i]) / ((v[i] - a[i] * a[i]) + eps).sqrt();
                    mom[i] = mu * mom[i] + inc;
                    p[i] -= mom[i];
                }
            }
        }
    }
}
