//! Raw views of the operands of one tensor (parameter, gradient, slots, accumulator, average)
//! and the gather/scatter used for the ones that are not contiguous.
//!
//! A tensor is walked either in memory order (every operand contiguous in the same order:
//! all C-contiguous, or all Fortran-contiguous) or in logical C order, where contiguous
//! operands are read directly and strided ones are gathered into a small buffer per block and
//! scattered back. Either way each element of the parameter meets the same elements of the
//! gradient and the slots.

/// One operand: a pointer to element 0 and, if it is not contiguous in the tensor's walking
/// order, its strides in elements.
#[derive(Clone, Debug)]
pub struct Operand<T> {
    pub ptr: *mut T,
    pub strides: Option<Box<[isize]>>,
}

// SAFETY: an `Operand` is a view into a NumPy buffer that the bindings keep alive and borrowed
// for the whole call. The driver hands disjoint index ranges of each tensor to different
// threads, and the bindings have checked that no two writable operands share memory and that
// no writable operand overlaps itself, so concurrent work items never touch the same element.
unsafe impl<T: Send> Send for Operand<T> {}
// SAFETY: as above; shared references are only used to read the pointer and strides.
unsafe impl<T: Sync> Sync for Operand<T> {}

impl<T: Copy> Operand<T> {
    #[must_use]
    pub fn contiguous(ptr: *mut T) -> Self {
        Operand { ptr, strides: None }
    }

    #[must_use]
    pub fn is_direct(&self) -> bool {
        self.strides.is_none()
    }

    /// The elements `start..start + n` of a direct operand.
    ///
    /// # Safety
    /// The operand is direct, `start + n` is within its length, the buffer is alive, and no
    /// other live reference covers these elements.
    #[inline(always)]
    #[must_use]
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn slice_mut(&self, start: usize, n: usize) -> &mut [T] {
        // SAFETY: guaranteed by the caller.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(start), n) }
    }

    /// Asks the CPU to start loading elements `start..start + n` of a direct operand into the
    /// cache (a hint: nothing is read or written, and a strided operand is left alone). For
    /// the rows of a row-sparse step, which are scattered over a table far larger than the
    /// cache: the next rows' loads then overlap the current row's arithmetic.
    #[inline(always)]
    pub fn prefetch(&self, start: usize, n: usize) {
        if !self.is_direct() {
            return;
        }
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            let first = self.ptr.wrapping_add(start).cast::<i8>();
            let bytes = n * std::mem::size_of::<T>();
            for offset in (0..bytes).step_by(64) {
                // SAFETY: a prefetch never faults and changes no memory; the address is inside
                // the operand's buffer (the caller's range is within it).
                unsafe { _mm_prefetch::<_MM_HINT_T0>(first.wrapping_add(offset)) };
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = (start, n);
    }

    /// Copies logical elements `start..start + out.len()` of a strided operand into `out`.
    ///
    /// # Safety
    /// Every visited offset is inside the operand's buffer (the bindings derived the strides
    /// and shape from the NumPy array itself).
    #[inline]
    pub unsafe fn gather(&self, shape: &[usize], start: usize, out: &mut [T]) {
        let strides = self.strides.as_deref().unwrap_or(&[]);
        for_each_offset(shape, strides, start, out.len(), |i, off| {
            // SAFETY: `off` is in bounds (caller's contract).
            out[i] = unsafe { *self.ptr.offset(off) };
        });
    }

    /// Writes `src` back to logical elements `start..start + src.len()`.
    ///
    /// # Safety
    /// As `gather`, and no other thread writes these elements.
    #[inline]
    pub unsafe fn scatter(&self, shape: &[usize], start: usize, src: &[T]) {
        let strides = self.strides.as_deref().unwrap_or(&[]);
        for_each_offset(shape, strides, start, src.len(), |i, off| {
            // SAFETY: `off` is in bounds (caller's contract).
            unsafe { *self.ptr.offset(off) = src[i] };
        });
    }
}

/// Calls `f(i, offset)` for the `n` logical (C order) elements starting at flat index
/// `start` of an array with this shape and these element strides.
#[inline]
pub fn for_each_offset(
    shape: &[usize],
    strides: &[isize],
    start: usize,
    n: usize,
    mut f: impl FnMut(usize, isize),
) {
    if n == 0 {
        return;
    }
    let nd = shape.len();
    if nd == 0 {
        f(0, 0);
        return;
    }
    // Multi-index of `start`, and its offset.
    let mut idx = [0usize; 64];
    let mut rem = start;
    let mut off: isize = 0;
    for k in (0..nd).rev() {
        idx[k] = rem % shape[k];
        rem /= shape[k];
        off += idx[k] as isize * strides[k];
    }
    let last = nd - 1;
    let (inner_len, inner_stride) = (shape[last], strides[last]);
    let mut i = 0;
    while i < n {
        // Run along the innermost axis, then carry.
        let run = (inner_len - idx[last]).min(n - i);
        for j in 0..run {
            f(i + j, off + j as isize * inner_stride);
        }
        i += run;
        if i == n {
            break;
        }
        off += run as isize * inner_stride;
        idx[last] += run;
        let mut k = last;
        while idx[k] == shape[k] {
            off -= shape[k] as isize * strides[k];
            idx[k] = 0;
            if k == 0 {
                break;
            }
            k -= 1;
            idx[k] += 1;
            off += strides[k];
        }
    }
}

/// True if no two distinct indices of an array with this shape and these strides (in
/// elements) address the same element: the classic sufficient test, axes sorted by stride
/// must each step over the whole extent of the smaller ones.
#[must_use]
pub fn is_non_overlapping(shape: &[usize], strides: &[isize]) -> bool {
    let mut axes: Vec<(usize, usize)> = shape
        .iter()
        .zip(strides)
        .filter(|(&n, _)| n > 1)
        .map(|(&n, &s)| (s.unsigned_abs(), n))
        .collect();
    if shape.contains(&0) {
        return true;
    }
    axes.sort_unstable();
    let mut span = 1usize;
    for (stride, n) in axes {
        if stride < span {
            return false;
        }
        span = stride.saturating_mul(n);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offsets(shape: &[usize], strides: &[isize], start: usize, n: usize) -> Vec<isize> {
        let mut v = Vec::new();
        for_each_offset(shape, strides, start, n, |i, off| {
            assert_eq!(i, v.len());
            v.push(off);
        });
        v
    }

    #[test]
    fn walks_logical_c_order() {
        // A transposed 2x3 C array: shape (3, 2), strides (1, 3).
        assert_eq!(offsets(&[3, 2], &[1, 3], 0, 6), vec![0, 3, 1, 4, 2, 5]);
        assert_eq!(offsets(&[3, 2], &[1, 3], 3, 3), vec![4, 2, 5]);
        // Every other column of a 2x6 array.
        assert_eq!(offsets(&[2, 3], &[6, 2], 1, 4), vec![2, 4, 6, 8]);
        // Negative strides.
        assert_eq!(offsets(&[4], &[-1], 1, 3), vec![-1, -2, -3]);
        assert_eq!(offsets(&[], &[], 0, 1), vec![0]);
    }

    #[test]
    fn walk_matches_index_arithmetic_for_3d() {
        let shape = [3usize, 4, 5];
        let strides = [40isize, -2, 7];
        for start in 0..60 {
            for n in 0..=(60 - start).min(17) {
                let got = offsets(&shape, &strides, start, n);
                let want: Vec<isize> = (start..start + n)
                    .map(|f| {
                        let (a, b, c) = (f / 20, (f / 5) % 4, f % 5);
                        a as isize * 40 - b as isize * 2 + c as isize * 7
                    })
                    .collect();
                assert_eq!(got, want);
            }
        }
    }

    #[test]
    fn overlap_detection() {
        assert!(is_non_overlapping(&[3, 4], &[4, 1]));
        assert!(is_non_overlapping(&[3, 4], &[1, 3]));
        assert!(is_non_overlapping(&[3, 2], &[8, 2]));
        assert!(!is_non_overlapping(&[3, 4], &[0, 1]));
        assert!(!is_non_overlapping(&[3, 4], &[2, 1]));
        assert!(is_non_overlapping(&[1, 4], &[0, 1]));
        assert!(is_non_overlapping(&[0, 4], &[0, 0]));
    }
}
