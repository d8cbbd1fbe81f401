//! Muon's orthogonalization, as Keras's `zeropower_via_newtonschulz5` (muon.py), for one
//! matrix in its own dtype:
//!
//! ```text
//! if rows > cols: X = X^T
//! X = X / (|X|_F + 1e-7)
//! repeat steps:  A = X X^T;  B = b A + c A A;  X = a X + B X
//! if transposed: X = X^T
//! ```
//! The products go through the `gemm` crate (blocked, runtime SIMD dispatch, multithreaded
//! on the driver's pool). A matrix product's rounding depends on its blocking, so the result
//! matches Keras to a few ulps of the matrix scale, not bitwise.

use super::pool;
use super::real::Real;
use super::reduce::sum_squares;
use gemm::{gemm, Parallelism};
use std::any::TypeId;

/// A matrix operand: element (i, j) at `ptr + i * rs + j * cs`.
#[derive(Clone, Copy)]
struct View<T> {
    ptr: *const T,
    rs: isize,
    cs: isize,
}

impl<T> View<T> {
    /// The row-major array at `ptr` with rows of `cols` elements.
    fn row_major(ptr: *const T, cols: usize) -> Self {
        View {
            ptr,
            rs: cols as isize,
            cs: 1,
        }
    }

    /// The transpose: the same elements with the strides swapped.
    fn t(self) -> Self {
        View {
            ptr: self.ptr,
            rs: self.cs,
            cs: self.rs,
        }
    }

    /// The `rows x cols` operand at `ptr`: a row-major array, or, when `transposed`, the
    /// row-major transpose stored as is (a `cols x rows` array, so its row stride is 1 and its
    /// column stride that array's row length).
    fn operand(ptr: *const T, rows: usize, cols: usize, transposed: bool) -> Self {
        if transposed {
            View::row_major(ptr, rows).t()
        } else {
            View::row_major(ptr, cols)
        }
    }
}

/// `dst = alpha * dst + beta * lhs rhs` for `m x k` times `k x n` views; `dst` is `m x n` with
/// row stride `dst_rs` and column stride 1.
///
/// # Safety
/// Every view addresses valid elements for the stated sizes; `dst` aliases neither input.
#[allow(clippy::too_many_arguments)]
unsafe fn matmul_views<T: Real>(
    m: usize,
    n: usize,
    k: usize,
    dst: *mut T,
    dst_rs: usize,
    lhs: View<T>,
    rhs: View<T>,
    alpha: T,
    beta: T,
    parallelism: Parallelism,
) {
    // SAFETY: guaranteed by the caller; `T` is f32 or f64, which `gemm` supports.
    unsafe {
        gemm(
            m,
            n,
            k,
            dst,
            1,
            dst_rs as isize,
            alpha != T::ZERO,
            lhs.ptr,
            lhs.cs,
            lhs.rs,
            rhs.ptr,
            rhs.cs,
            rhs.rs,
            alpha,
            beta,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// Block rows of the symmetric products: the lower triangle costs (1 + 2 + ... + B) / B^2 of
/// the full product, 0.625 for 4.
const SYMMETRIC_BLOCKS: usize = 4;
/// From this size of the Gram matrix the block rows are faster than one full product (smaller
/// products parallelize and block less well).
const SYMMETRIC_FROM: usize = 512;

/// `dst = alpha * dst + beta * lhs lhs^T`-like products whose result is symmetric: only the
/// lower triangle is computed, in `SYMMETRIC_BLOCKS` block rows, then mirrored. `lhs` is
/// `r x k`, `rhs` is `k x r` and `lhs rhs` must be symmetric (X X^T, or A A for symmetric A).
///
/// # Safety
/// As `matmul_views`; `dst` is `r x r` row-major.
#[allow(clippy::too_many_arguments)]
unsafe fn symmetric_product<T: Real>(
    r: usize,
    k: usize,
    dst: &mut [T],
    lhs: View<T>,
    rhs: View<T>,
    alpha: T,
    beta: T,
    parallelism: Parallelism,
) {
    for block in 0..SYMMETRIC_BLOCKS {
        let i0 = r * block / SYMMETRIC_BLOCKS;
        let i1 = r * (block + 1) / SYMMETRIC_BLOCKS;
        if i0 == i1 {
            continue;
        }
        // Rows i0..i1, columns 0..i1 (the diagonal block in full).
        // SAFETY: row i0 of `lhs` and of `dst` are inside them; the sizes shrink accordingly.
        unsafe {
            matmul_views(
                i1 - i0,
                i1,
                k,
                dst.as_mut_ptr().add(i0 * r),
                r,
                View {
                    ptr: lhs.ptr.offset(i0 as isize * lhs.rs),
                    ..lhs
                },
                rhs,
                alpha,
                beta,
                parallelism,
            );
        }
    }
    for i in 0..r {
        for j in i + 1..r {
            dst[i * r + j] = dst[j * r + i];
        }
    }
}

/// `dst = alpha * dst + beta * lhs rhs` for row-major `m x k` times `k x n`.
///
/// # Safety
/// Every pointer addresses a row-major matrix of the stated size; `dst` aliases neither input.
#[allow(clippy::too_many_arguments)]
unsafe fn matmul<T: Real>(
    m: usize,
    n: usize,
    k: usize,
    dst: *mut T,
    lhs: *const T,
    lhs_transposed: bool,
    rhs: *const T,
    rhs_transposed: bool,
    alpha: T,
    beta: T,
    parallelism: Parallelism,
) {
    // A transposed lhs (m x k) is stored as a k x m array, a transposed rhs (k x n) as n x k.
    let lhs = View::operand(lhs, m, k, lhs_transposed);
    let rhs = View::operand(rhs, k, n, rhs_transposed);
    // SAFETY: guaranteed by the caller.
    unsafe { matmul_views(m, n, k, dst, n, lhs, rhs, alpha, beta, parallelism) };
}

/// One step: `A = X X^T`, `B = b A + c A A`, `next = a X + B X` (`cur` is `r x k`).
#[allow(clippy::too_many_arguments)]
fn iteration<T: Real>(
    r: usize,
    k: usize,
    cur: &[T],
    gram: &mut [T],
    poly: &mut [T],
    next: &mut [T],
    (a, b, c): (T, T, T),
    par: Parallelism,
) {
    debug_assert!(cur.len() == r * k && next.len() == r * k);
    debug_assert!(gram.len() == r * r && poly.len() == r * r);
    // SAFETY: `newton_schulz` allocates the four buffers with exactly these sizes (`cur` and
    // `next` r x k, `gram` and `poly` r x r, row-major), and they are distinct.
    unsafe {
        if r >= SYMMETRIC_FROM {
            // A = X X^T and B = b A + c A A are symmetric: lower triangles only.
            let x = View::row_major(cur.as_ptr(), k);
            symmetric_product(r, k, gram, x, x.t(), T::ZERO, T::ONE, par);
            for (p, g) in poly.iter_mut().zip(gram.iter()) {
                *p = b * *g;
            }
            let a_view = View::row_major(gram.as_ptr(), r);
            symmetric_product(r, r, poly, a_view, a_view, T::ONE, c, par);
        } else {
            // A = X X^T
            matmul(
                r,
                r,
                k,
                gram.as_mut_ptr(),
                cur.as_ptr(),
                false,
                cur.as_ptr(),
                true,
                T::ZERO,
                T::ONE,
                par,
            );
            // B = b A + c A A
            for (p, g) in poly.iter_mut().zip(gram.iter()) {
                *p = b * *g;
            }
            matmul(
                r,
                r,
                r,
                poly.as_mut_ptr(),
                gram.as_ptr(),
                false,
                gram.as_ptr(),
                false,
                T::ONE,
                c,
                par,
            );
        }
        // X = a X + B X
        next.copy_from_slice(cur);
        matmul(
            r,
            k,
            r,
            next.as_mut_ptr(),
            poly.as_ptr(),
            false,
            cur.as_ptr(),
            false,
            a,
            T::ONE,
            par,
        );
    }
}

/// Orthogonalizes the row-major `rows x cols` matrix `x` in place.
pub fn newton_schulz<T: Real>(
    x: &mut [T],
    rows: usize,
    cols: usize,
    steps: usize,
    a: f64,
    b: f64,
    c: f64,
) {
    debug_assert!(
        TypeId::of::<T>() == TypeId::of::<f32>() || TypeId::of::<T>() == TypeId::of::<f64>()
    );
    debug_assert_eq!(x.len(), rows * cols);
    if x.is_empty() {
        return;
    }
    // Work on the wide orientation: r <= k.
    let transposed = rows > cols;
    let (r, k) = if transposed {
        (cols, rows)
    } else {
        (rows, cols)
    };
    let mut cur: Vec<T> = if transposed {
        let mut t = vec![T::ZERO; x.len()];
        for i in 0..rows {
            for j in 0..cols {
                t[j * rows + i] = x[i * cols + j];
            }
        }
        t
    } else {
        x.to_vec()
    };
    let norm = T::from_f64(sum_squares(&cur)).sqrt();
    let denom = norm + T::from_f64(1e-7);
    for v in &mut cur {
        *v = *v / denom;
    }
    let (a, b, c) = (T::from_f64(a), T::from_f64(b), T::from_f64(c));
    let mut gram = vec![T::ZERO; r * r];
    let mut poly = vec![T::ZERO; r * r];
    let mut next = vec![T::ZERO; r * k];
    let threads = pool::num_threads();
    let iterate = move |par: Parallelism| {
        for _ in 0..steps {
            iteration(r, k, &cur, &mut gram, &mut poly, &mut next, (a, b, c), par);
            std::mem::swap(&mut cur, &mut next);
        }
        cur
    };
    let cur = match pool::pool(pool::Kind::Full) {
        Some(p) if threads > 1 => p.install(|| iterate(Parallelism::Rayon(threads))),
        _ => iterate(Parallelism::None),
    };
    if transposed {
        for i in 0..rows {
            for j in 0..cols {
                x[i * cols + j] = cur[j * rows + i];
            }
        }
    } else {
        x.copy_from_slice(&cur);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Plain triple loops in f64, for the shapes the blocked products take.
    fn reference(x: &[f64], rows: usize, cols: usize, steps: usize) -> Vec<f64> {
        let (a, b, c) = (3.4445, -4.7750, 2.0315);
        let t = rows > cols;
        let (r, k) = if t { (cols, rows) } else { (rows, cols) };
        let mut m: Vec<f64> = (0..r * k)
            .map(|idx| {
                let (i, j) = (idx / k, idx % k);
                if t {
                    x[j * cols + i]
                } else {
                    x[i * cols + j]
                }
            })
            .collect();
        let norm = m.iter().map(|v| v * v).sum::<f64>().sqrt() + 1e-7;
        for v in &mut m {
            *v /= norm;
        }
        for _ in 0..steps {
            let g: Vec<f64> = (0..r * r)
                .map(|idx| {
                    (0..k)
                        .map(|l| m[(idx / r) * k + l] * m[(idx % r) * k + l])
                        .sum()
                })
                .collect();
            let p: Vec<f64> = (0..r * r)
                .map(|idx| {
                    b * g[idx]
                        + c * (0..r)
                            .map(|l| g[(idx / r) * r + l] * g[l * r + idx % r])
                            .sum::<f64>()
                })
                .collect();
            m = (0..r * k)
                .map(|idx| {
                    a * m[idx]
                        + (0..r)
                            .map(|l| p[(idx / k) * r + l] * m[l * k + idx % k])
                            .sum::<f64>()
                })
                .collect();
        }
        (0..rows * cols)
            .map(|idx| {
                let (i, j) = (idx / cols, idx % cols);
                if t {
                    m[j * k + i]
                } else {
                    m[i * k + j]
                }
            })
            .collect()
    }

    #[test]
    fn matches_plain_loops_for_every_orientation() {
        for (rows, cols) in [(3, 5), (5, 3), (4, 4), (1, 6), (6, 1), (17, 9)] {
            let x: Vec<f64> = (0..rows * cols)
                .map(|i| ((i * 7 % 11) as f64 - 5.0) / 3.0)
                .collect();
            let want = reference(&x, rows, cols, 3);
            let mut got = x.clone();
            newton_schulz(&mut got, rows, cols, 3, 3.4445, -4.7750, 2.0315);
            for (g, w) in got.iter().zip(&want) {
                assert!((g - w).abs() < 1e-10, "{rows}x{cols}: {got:?} vs {want:?}");
            }
        }
    }

    #[test]
    fn the_symmetric_products_match_plain_loops() {
        // A Gram matrix of `SYMMETRIC_FROM` rows and more: the lower-triangle path, both
        // orientations, with an odd size so the block rows are uneven.
        for (rows, cols) in [(SYMMETRIC_FROM + 3, 600), (600, SYMMETRIC_FROM + 3)] {
            let x: Vec<f64> = (0..rows * cols)
                .map(|i| ((i * 7919 % 1013) as f64 - 506.0) / 300.0)
                .collect();
            let want = reference(&x, rows, cols, 2);
            let mut got = x.clone();
            newton_schulz(&mut got, rows, cols, 2, 3.4445, -4.7750, 2.0315);
            let worst = got
                .iter()
                .zip(&want)
                .map(|(g, w)| (g - w).abs())
                .fold(0.0, f64::max);
            assert!(worst < 1e-10, "{rows}x{cols}: worst difference {worst}");
        }
    }

    #[test]
    fn keras_test_value() {
        // Keras's muon_test expectation for this input and 5 steps.
        let mut x = vec![0.2499f32, 0.9105, 0.2655, 0.8824];
        newton_schulz(&mut x, 2, 2, 5, 3.4445, -4.7750, 2.0315);
        let want = [-0.441_902_04_f32, 0.645_592, 0.728_158_95, 0.296_955_82];
        for (g, w) in x.iter().zip(want) {
            assert!((g - w).abs() < 1e-5, "{x:?}");
        }
    }
}
