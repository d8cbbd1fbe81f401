//! Deterministic sums of squares for norm clipping (and, later, Lamb's trust ratio).
//!
//! The result must not depend on the thread count or the SIMD level, so the summation order
//! is fixed: each block is summed into eight independent `f64` lanes (the compiler may put
//! them in registers of any width but cannot reorder the adds within a lane), the lanes are
//! combined in a fixed tree, blocks are added in index order within a work item, and work items
//! in index order. Work items and blocks are cut at positions that depend only on the tensor
//! sizes.

use super::real::Real;

const LANES: usize = 8;

/// Sum of `x * x` in `f64`, in the fixed order described above.
#[inline(always)]
#[must_use]
pub fn sum_squares<T: Real>(x: &[T]) -> f64 {
    let mut acc = [0.0f64; LANES];
    let mut chunks = x.chunks_exact(LANES);
    for c in &mut chunks {
        for j in 0..LANES {
            let v = c[j].to_f64();
            acc[j] += v * v;
        }
    }
    for (j, v) in chunks.remainder().iter().enumerate() {
        let v = v.to_f64();
        acc[j] += v * v;
    }
    ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]))
}

/// True if every element is finite. `x * 0` is 0 for a finite `x` and NaN for an infinite
/// or NaN one, so one NaN poisons the sum: branch-free, and it vectorizes.
#[inline(always)]
#[must_use]
pub fn all_finite<T: Real>(x: &[T]) -> bool {
    let mut acc = [T::ZERO; LANES];
    let mut chunks = x.chunks_exact(LANES);
    for c in &mut chunks {
        for j in 0..LANES {
            acc[j] += c[j] * T::ZERO;
        }
    }
    for (j, v) in chunks.remainder().iter().enumerate() {
        acc[j] += *v * T::ZERO;
    }
    acc.iter().all(|a| *a == T::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_exact_small_sums() {
        let x: Vec<f32> = (0..37).map(|i| i as f32).collect();
        let want: f64 = (0..37).map(|i| f64::from(i * i)).sum();
        assert_eq!(sum_squares(&x), want);
        assert_eq!(sum_squares::<f64>(&[]), 0.0);
        assert!(sum_squares(&[1.0f32, f32::NAN]).is_nan());
        assert_eq!(sum_squares(&[f32::INFINITY, 1.0]), f64::INFINITY);
    }

    #[test]
    fn finiteness() {
        let mut x = vec![1.0f32; 37];
        assert!(all_finite(&x));
        assert!(all_finite::<f64>(&[]));
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            for i in [0, 7, 8, 36] {
                x[i] = bad;
                assert!(!all_finite(&x));
                x[i] = 1.0;
            }
        }
        assert!(all_finite(&[
            f32::MAX,
            -f32::MAX,
            0.0,
            -0.0,
            f32::MIN_POSITIVE / 2.0
        ]));
    }
}
