//! FTRL-proximal, as `keras/src/optimizers/ftrl.py` (p = `learning_rate_power`,
//! n = accumulator, z = linear):
//!
//! ```text
//! l2'   = l2 + beta / (2 * lr)
//! g_s   = g + 2 * l2_shrinkage * w
//! n_new = n + g^2
//! z     = z + g_s - ((n_new^(-p) - n^(-p)) / lr) * w
//! quad  = n_new^(-p) / lr + 2 * l2'
//! w     = (clip(z, -l1, l1) - z) / quad
//! n     = n_new
//! ```
//! The variable is replaced, not incremented. `x^(-p)` is a square root for the default
//! `p = -0.5` (vectorized and exact), 1 for `p = 0`, and a general power otherwise; the case
//! is chosen once per call, outside the loop, so each case vectorizes. The two divisions by
//! `lr` are multiplications by `1 / lr`, as XLA (Keras's JAX backend) computes them.

use super::real::clip;
use super::{block, Hyperparameters, Real, Rule};

#[derive(Clone, Copy)]
enum Power {
    Zero,
    Half,
    One,
    Other,
}

pub struct Ftrl<T> {
    lr: T,
    neg_power: T,
    power: Power,
    l1: T,
    two_l2: T,
    two_shrinkage: T,
}

/// The hyperparameters of `Ftrl` as the caller passes them (f64, u64); `build` rounds them to
/// the rule's float type.
#[derive(Clone, Copy, Debug)]
pub struct FtrlParams {
    pub learning_rate: f64,
    pub learning_rate_power: f64,
    pub l1_regularization_strength: f64,
    pub l2_regularization_strength: f64,
    pub l2_shrinkage_regularization_strength: f64,
    pub beta: f64,
}

impl Hyperparameters for FtrlParams {
    type Rule<T: Real> = Ftrl<T>;

    fn build<T: Real>(&self) -> Ftrl<T> {
        let lr = T::from_f64(self.learning_rate);
        let l2_adj = T::from_f64(self.l2_regularization_strength)
            + T::from_f64(self.beta) / (T::from_f64(2.0) * lr);
        let neg = -self.learning_rate_power;
        Ftrl {
            lr,
            neg_power: T::from_f64(neg),
            power: if neg == 0.0 {
                Power::Zero
            } else if neg == 0.5 {
                Power::Half
            } else if neg == 1.0 {
                Power::One
            } else {
                Power::Other
            },
            l1: T::from_f64(self.l1_regularization_strength),
            two_l2: T::from_f64(2.0) * l2_adj,
            two_shrinkage: T::from_f64(2.0 * self.l2_shrinkage_regularization_strength),
        }
    }
}

impl<T: Real> Ftrl<T> {
    /// The update with `x^(-p)` computed by `pow`, on operands of one length (`block`).
    #[inline(always)]
    fn run(&self, p: &mut [T], g: &[T], [acc, z]: [&mut [T]; 2], pow: impl Fn(T) -> T) {
        let (l1, two_l2, two_s) = (self.l1, self.two_l2, self.two_shrinkage);
        let inv_lr = T::ONE / self.lr;
        for i in 0..p.len() {
            let gs = g[i] + two_s * p[i];
            let n_new = acc[i] + g[i] * g[i];
            let pn_new = pow(n_new);
            z[i] += gs - ((pn_new - pow(acc[i])) * inv_lr) * p[i];
            let quad = pn_new * inv_lr + two_l2;
            p[i] = (clip(z[i], -l1, l1) - z[i]) / quad;
            acc[i] = n_new;
        }
    }
}

impl<T: Real> Rule<T> for Ftrl<T> {
    fn slots(&self) -> usize {
        2
    }

    #[inline(always)]
    fn update(&self, p: &mut [T], g: &[T], slots: &mut [&mut [T]]) {
        let (p, g, slots) = block(p, g, slots);
        match self.power {
            Power::Zero => self.run(p, g, slots, |_| T::ONE),
            Power::Half => self.run(p, g, slots, T::sqrt),
            Power::One => self.run(p, g, slots, |x| x),
            Power::Other => {
                let e = self.neg_power;
                self.run(p, g, slots, |x| x.pow(e));
            }
        }
    }
}
