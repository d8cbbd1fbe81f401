//! The float types the kernels are generic over.

use std::ops::{Add, AddAssign, Div, Mul, Neg, Sub, SubAssign};

/// `f32` or `f64`. Scalars arrive from Python as `f64` and are rounded once to `Self`,
/// as Keras rounds a Python float when it meets a tensor of the variable's dtype.
pub trait Real:
    Copy
    + Send
    + Sync
    + 'static
    + PartialOrd
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + AddAssign
    + SubAssign
    + std::fmt::Debug
{
    const ZERO: Self;
    const ONE: Self;
    const NAME: &'static str;
    /// The other float type (f64 for f32 and back): a gradient may come in it.
    type Other: Real<Other = Self>;
    /// Rounds to nearest (even), as NumPy's `astype` does: f64 -> f32 may round, overflow to
    /// inf, and keeps NaN; f32 -> f64 is exact.
    fn from_other(x: Self::Other) -> Self;
    fn from_f64(x: f64) -> Self;
    fn to_f64(self) -> f64;
    #[must_use]
    fn sqrt(self) -> Self;
    #[must_use]
    fn abs(self) -> Self;
    /// `self^e` correctly rounded (`crmath`): the same bits on every machine and libm.
    #[must_use]
    fn pow(self, e: Self) -> Self;
    fn is_nan(self) -> bool;
}

macro_rules! impl_real {
    ($t:ty, $other:ty, $name:literal, $pow:path) => {
        impl Real for $t {
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            const NAME: &'static str = $name;
            type Other = $other;
            #[inline(always)]
            #[allow(clippy::cast_possible_truncation, clippy::cast_lossless)]
            fn from_other(x: $other) -> Self {
                x as $t
            }
            #[inline(always)]
            fn from_f64(x: f64) -> Self {
                x as $t
            }
            #[inline(always)]
            fn to_f64(self) -> f64 {
                f64::from(self)
            }
            #[inline(always)]
            fn sqrt(self) -> Self {
                <$t>::sqrt(self)
            }
            #[inline(always)]
            fn abs(self) -> Self {
                <$t>::abs(self)
            }
            #[inline(always)]
            fn pow(self, e: Self) -> Self {
                $pow(self, e)
            }
            #[inline(always)]
            fn is_nan(self) -> bool {
                <$t>::is_nan(self)
            }
        }
    };
}
impl_real!(f32, f64, "float32", super::crmath::pow_f32);
impl_real!(f64, f32, "float64", super::crmath::pow_f64);

/// `max` that propagates NaN from either side, like `numpy.maximum` and Keras's
/// `ops.maximum` (`f32::max` drops NaN). Written as selects so it vectorizes.
#[inline(always)]
pub fn max_nan<T: Real>(a: T, b: T) -> T {
    if a.is_nan() || a > b {
        a
    } else {
        b
    }
}

/// `clip(x, lo, hi)` that keeps NaN, like `numpy.clip`.
#[inline(always)]
pub fn clip<T: Real>(x: T, lo: T, hi: T) -> T {
    if x < lo {
        lo
    } else if x > hi {
        hi
    } else {
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_nan_propagates_from_either_side() {
        assert!(max_nan(f32::NAN, 1.0).is_nan());
        assert!(max_nan(1.0, f32::NAN).is_nan());
        assert_eq!(max_nan(2.0_f64, 1.0), 2.0);
        assert_eq!(max_nan(-2.0_f64, 1.0), 1.0);
    }

    #[test]
    fn clip_keeps_nan() {
        assert!(clip(f32::NAN, -1.0, 1.0).is_nan());
        assert_eq!(clip(5.0_f32, -1.0, 1.0), 1.0);
        assert_eq!(clip(-5.0_f32, -1.0, 1.0), -1.0);
        assert_eq!(clip(0.25_f32, -1.0, 1.0), 0.25);
    }
}
