//! SGD with optional (Nesterov) momentum, as `keras/src/optimizers/sgd.py`:
//!
//! ```text
//! momentum == 0:  w = w - g * lr
//! otherwise:      m = m * momentum - g * lr
//!                 nesterov: w = w + (m * momentum - g * lr)    (with the new m)
//!                 plain:    w = w + m
//! ```

use super::{block, Hyperparameters, Real, Rule};

pub struct Sgd<T> {
    lr: T,
    momentum: T,
    /// Decided on the float64 momentum, as Keras decides whether to create the slot: a
    /// momentum that rounds to 0 in float32 still keeps (and updates) a momentum slot.
    has_momentum: bool,
    nesterov: bool,
}

/// The hyperparameters of `Sgd` as the caller passes them (f64, u64); `build` rounds them to
/// the rule's float type.
#[derive(Clone, Copy, Debug)]
pub struct SgdParams {
    pub learning_rate: f64,
    pub momentum: f64,
    pub nesterov: bool,
}

impl Hyperparameters for SgdParams {
    type Rule<T: Real> = Sgd<T>;

    fn build<T: Real>(&self) -> Sgd<T> {
        Sgd {
            lr: T::from_f64(self.learning_rate),
            momentum: T::from_f64(self.momentum),
            has_momentum: self.momentum != 0.0,
            nesterov: self.nesterov,
        }
    }
}

impl<T: Real> Rule<T> for Sgd<T> {
    fn slots(&self) -> usize {
        usize::from(self.has_momentum)
    }

    /// Without momentum, `w - 0 * lr` is `w`.
    fn rows_only(&self) -> bool {
        !self.has_momentum
    }

    #[inline(always)]
    fn update(&self, p: &mut [T], g: &[T], slots: &mut [&mut [T]]) {
        let (lr, mu) = (self.lr, self.momentum);
        if !self.has_momentum {
            let (p, g, []) = block(p, g, slots);
            for i in 0..p.len() {
                p[i] -= g[i] * lr;
            }
        } else if self.nesterov {
            let (p, g, [m]) = block(p, g, slots);
            for i in 0..p.len() {
                m[i] = m[i] * mu - g[i] * lr;
                p[i] += m[i] * mu - g[i] * lr;
            }
        } else {
            let (p, g, [m]) = block(p, g, slots);
            for i in 0..p.len() {
                m[i] = m[i] * mu - g[i] * lr;
                p[i] += m[i];
            }
        }
    }
}
