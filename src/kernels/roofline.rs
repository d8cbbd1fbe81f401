//! The benchmark floor: a "rule" that moves the same bytes as a real one (reads the
//! parameter, the gradient and every slot; writes the parameter and every slot) with one add
//! per stream, through the same driver. A real rule at this speed is memory-bound.

use super::{Hyperparameters, Real, Rule};

#[derive(Clone, Copy, Debug)]
pub struct Roofline {
    pub slots: usize,
}

/// One value for both float types: the floor has no scalars to round.
impl Hyperparameters for Roofline {
    type Rule<T: Real> = Roofline;

    fn build<T: Real>(&self) -> Roofline {
        *self
    }
}

impl<T: Real> Rule<T> for Roofline {
    fn slots(&self) -> usize {
        self.slots
    }

    #[inline(always)]
    fn update(&self, p: &mut [T], g: &[T], slots: &mut [&mut [T]]) {
        let n = p.len();
        let g = &g[..n];
        // One fused loop per slot count, like a real rule, so the streams are read together.
        match slots {
            [] => {
                for i in 0..n {
                    p[i] += g[i];
                }
            }
            [a] => {
                let a = &mut a[..n];
                for i in 0..n {
                    p[i] += g[i];
                    a[i] += g[i];
                }
            }
            [a, b] => {
                let (a, b) = (&mut a[..n], &mut b[..n]);
                for i in 0..n {
                    p[i] += g[i];
                    a[i] += g[i];
                    b[i] += g[i];
                }
            }
            [a, b, c, ..] => {
                let (a, b, c) = (&mut a[..n], &mut b[..n], &mut c[..n]);
                for i in 0..n {
                    p[i] += g[i];
                    a[i] += g[i];
                    b[i] += g[i];
                    c[i] += g[i];
                }
            }
        }
    }
}
