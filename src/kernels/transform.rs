//! The gradient transforms alone: a "rule" that writes the gradient it receives (unscaled,
//! averaged with the accumulators, clipped, per the prologue) into the parameter's place, for
//! the optimizers whose update runs in NumPy after the native prologue.
//!
//! ```text
//! w = 0 + g
//! ```
//!
//! `0 + g` rather than `g`: a negative zero comes out +0, the value summing the gradient into
//! a zeroed array gives, which is what those optimizers read.

use super::{Hyperparameters, Real, Rule};

#[derive(Clone, Copy, Debug)]
pub struct TransformGradients;

impl Hyperparameters for TransformGradients {
    type Rule<T: Real> = TransformGradients;

    fn build<T: Real>(&self) -> TransformGradients {
        *self
    }
}

impl<T: Real> Rule<T> for TransformGradients {
    fn slots(&self) -> usize {
        0
    }

    #[inline(always)]
    fn update(&self, p: &mut [T], g: &[T], _slots: &mut [&mut [T]]) {
        let n = p.len();
        let g = &g[..n];
        for i in 0..n {
            p[i] = T::ZERO + g[i];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_the_gradient_with_zeros_positive() {
        let g = [1.5f32, -0.0, 0.0, f32::NAN, -3.25, f32::INFINITY];
        let mut p = [7.0f32; 6];
        Rule::<f32>::update(&TransformGradients, &mut p, &g, &mut []);
        assert_eq!(p[0], 1.5);
        assert!(p[1] == 0.0 && p[1].is_sign_positive());
        assert!(p[2] == 0.0 && p[2].is_sign_positive());
        assert!(p[3].is_nan());
        assert_eq!(p[4], -3.25);
        assert_eq!(p[5], f32::INFINITY);
    }
}
