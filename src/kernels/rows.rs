//! Row-sparse gradients: Keras's `IndexedSlices` (values, indices into the first axis, dense
//! shape), as the kernels read them.
//!
//! A gradient given as rows is first summed into `Rows`: its distinct row indices in ascending
//! order and one summed row of values each, a buffer of `distinct rows x row length` elements
//! (never the size of the table). Repeated indices are summed in the order they appear,
//! starting from zero, which is what scattering them into a zero gradient does
//! (`np.add.at(np.zeros(dense_shape), indices, values)`, or TensorFlow converting
//! `IndexedSlices` to a dense tensor): the dense step on that scattered gradient and the sparse
//! step see the same gradient, bit for bit, whatever the thread count.
//!
//! The driver then reads it one of two ways:
//!
//! - over the whole tensor, where the rule changes every element (moments that decay where the
//!   gradient is zero): each block is filled with zeros and the rows it meets (`fill`);
//! - over the rows alone (`rows`, `row`), where the elements outside them would not change:
//!   rules for which a zero gradient leaves an element and its slots as they are (plain SGD,
//!   Adagrad), and any element-wise rule in lazy mode.

use super::layout::Operand;
use super::pool;
use super::real::Real;

/// Batches of at least this many elements are summed on the pool.
const PARALLEL_FROM: usize = 1 << 16;
/// How many positions ahead the summing asks for a row of the values.
const PREFETCH_AHEAD: usize = 8;

/// The distinct rows' sums, written by the parts of `Rows::summed` (each its own rows).
struct Output<T>(*mut T);

// SAFETY: the parts write disjoint rows of a buffer that outlives them.
unsafe impl<T> Sync for Output<T> {}

impl<T> Output<T> {
    /// Row `g` of the buffer.
    ///
    /// # Safety
    /// The buffer holds at least `(g + 1) * row_len` elements and no other reference covers
    /// row `g` meanwhile.
    #[allow(clippy::mut_from_ref)]
    unsafe fn row(&self, g: usize, row_len: usize) -> &mut [T] {
        // SAFETY: guaranteed by the caller.
        unsafe { std::slice::from_raw_parts_mut(self.0.add(g * row_len), row_len) }
    }
}

/// The rows of a row-sparse gradient, duplicates summed (see the module docs).
#[derive(Debug)]
pub struct Rows<T> {
    /// The distinct row indices, ascending.
    indices: Vec<usize>,
    /// `row_len` elements per entry of `rows`, in the same order.
    values: Vec<T>,
    row_len: usize,
}

impl<T: Real> Rows<T> {
    /// Sums the rows of `values` (an array of shape `shape`: one row of `row_len` elements per
    /// entry of `indices`, in the values' own dtype `U`) by row index, in position order from
    /// zero, then converts each sum with `cast`. Large batches are summed on the pool, a range
    /// of distinct rows per part: each row's sum is made by one thread in the same order, so
    /// the result does not depend on the thread count.
    ///
    /// # Safety
    /// `values` is alive for the call and holds `shape`'s elements in its layout, `shape[0]` is
    /// `indices.len()` and the product of `shape[1..]` is `row_len`; the caller has checked
    /// every index against the table's row count.
    pub unsafe fn summed<U: Real, C: Fn(U) -> T + Sync>(
        indices: &[usize],
        row_len: usize,
        values: &Operand<U>,
        shape: &[usize],
        cast: C,
    ) -> Self {
        let order = by_row(indices);
        // Where each distinct row's run of positions starts in `order`.
        let mut starts: Vec<usize> = Vec::with_capacity(order.len() + 1);
        for (k, &position) in order.iter().enumerate() {
            if k == 0 || indices[position] != indices[order[k - 1]] {
                starts.push(k);
            }
        }
        let rows: Vec<usize> = starts.iter().map(|&k| indices[order[k]]).collect();
        starts.push(order.len());
        let distinct = rows.len();
        let mut out = vec![T::ZERO; distinct * row_len];
        let target = Output(out.as_mut_ptr());
        let sum_rows = |first: usize, last: usize| {
            let mut sum = vec![U::ZERO; row_len];
            let mut buf = vec![U::ZERO; if values.is_direct() { 0 } else { row_len }];
            for g in first..last {
                sum.fill(U::ZERO);
                for k in starts[g]..starts[g + 1] {
                    // The values' rows are visited in row order, not position order: ask
                    // for the ones a few positions ahead.
                    if let Some(&ahead) = order.get(k + PREFETCH_AHEAD) {
                        values.prefetch(ahead * row_len, row_len);
                    }
                    // SAFETY: `order[k]` is a position below `shape[0]` (caller's contract).
                    unsafe { add_row(values, shape, order[k], &mut sum, &mut buf) };
                }
                // SAFETY: distinct row `g` owns elements `g * row_len..` of `out`, which
                // outlives the parts; no other part writes them.
                let dest = unsafe { target.row(g, row_len) };
                for (d, &s) in dest.iter_mut().zip(&sum) {
                    *d = cast(s);
                }
            }
        };
        let total = order.len() * row_len;
        if total >= PARALLEL_FROM && pool::num_threads() > 1 {
            let parts = (4 * pool::num_threads()).min(distinct.max(1));
            pool::run_parts(parts, |p| {
                sum_rows(distinct * p / parts, distinct * (p + 1) / parts);
            });
        } else {
            sum_rows(0, distinct);
        }
        Rows {
            indices: rows,
            values: out,
            row_len,
        }
    }

    /// The distinct row indices, ascending.
    #[must_use]
    pub fn rows(&self) -> &[usize] {
        &self.indices
    }

    #[must_use]
    pub fn row_len(&self) -> usize {
        self.row_len
    }

    /// The summed values of the `k`-th distinct row.
    #[must_use]
    pub fn row(&self, k: usize) -> &[T] {
        &self.values[k * self.row_len..(k + 1) * self.row_len]
    }

    /// The number of elements the rows cover.
    #[must_use]
    pub fn len(&self) -> usize {
        self.values.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Writes the dense gradient's elements `b..b + out.len()` (of the tensor in logical C
    /// order) into `out`: zero outside the rows.
    pub fn fill(&self, b: usize, out: &mut [T]) {
        out.fill(T::ZERO);
        let (l, end) = (self.row_len, b + out.len());
        if l == 0 {
            return;
        }
        // The first row that ends after `b`.
        let mut k = self.indices.partition_point(|&r| (r + 1) * l <= b);
        while k < self.indices.len() && self.indices[k] * l < end {
            let start = self.indices[k] * l;
            let (lo, hi) = (start.max(b), (start + l).min(end));
            out[lo - b..hi - b]
                .copy_from_slice(&self.values[k * l + (lo - start)..k * l + (hi - start)]);
            k += 1;
        }
    }

    /// Whether any row meets the elements `b..b + n`.
    #[must_use]
    pub fn meets(&self, b: usize, n: usize) -> bool {
        let l = self.row_len;
        if l == 0 || n == 0 {
            return false;
        }
        let k = self.indices.partition_point(|&r| (r + 1) * l <= b);
        k < self.indices.len() && self.indices[k] * l < b + n
    }

    /// The first element of every `block`-aligned block of the tensor that a row meets,
    /// ascending.
    #[must_use]
    pub fn blocks_met(&self, block: usize) -> Vec<usize> {
        let l = self.row_len;
        let mut out: Vec<usize> = Vec::new();
        if l == 0 {
            return out;
        }
        for &r in &self.indices {
            let first = r * l / block;
            let last = (r * l + l - 1) / block;
            let from = match out.last() {
                Some(&b) if b / block >= first => b / block + 1,
                _ => first,
            };
            out.extend((from..=last).map(|k| k * block));
        }
        out
    }
}

/// The positions of `indices` sorted by row, equal rows in order of appearance.
fn by_row(indices: &[usize]) -> Vec<usize> {
    let narrow =
        u32::try_from(indices.len()).is_ok() && indices.iter().all(|&r| u32::try_from(r).is_ok());
    if narrow {
        // Row and position packed in one key: an unstable sort of plain integers keeps equal
        // rows in position order, and is several times faster than a keyed stable sort.
        let mut keys: Vec<u64> = indices
            .iter()
            .enumerate()
            .map(|(k, &r)| ((r as u64) << 32) | k as u64)
            .collect();
        keys.sort_unstable();
        return keys
            .into_iter()
            .map(|key| (key & 0xffff_ffff) as usize)
            .collect();
    }
    let mut order: Vec<usize> = (0..indices.len()).collect();
    order.sort_by_key(|&k| indices[k]);
    order
}

/// Adds row `k` (of `sum.len()` elements) of a values array of shape `shape` (rows first) to
/// `sum`; `buf` (as long as `sum`) holds a strided row.
///
/// # Safety
/// The operand is alive and holds `shape`'s elements in its layout, and `k` is below
/// `shape[0]`.
pub unsafe fn add_row<U: Real>(
    values: &Operand<U>,
    shape: &[usize],
    k: usize,
    sum: &mut [U],
    buf: &mut [U],
) {
    let l = sum.len();
    let row: &[U] = if values.is_direct() {
        // SAFETY: in range (caller's contract); read only.
        unsafe { values.slice_mut(k * l, l) }
    } else {
        // SAFETY: as above, through the array's own strides.
        unsafe { values.gather(shape, k * l, &mut buf[..l]) };
        &buf[..l]
    };
    for (s, &v) in sum.iter_mut().zip(row) {
        *s += v;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summed(indices: &[usize], values: &[f32], l: usize) -> Rows<f32> {
        let mut values = values.to_vec();
        let op = Operand::contiguous(values.as_mut_ptr());
        // SAFETY: `values` holds `indices.len() * l` elements and outlives the call.
        unsafe { Rows::summed(indices, l, &op, &[indices.len(), l], |x| x) }
    }

    #[test]
    fn duplicates_sum_in_order_of_appearance_from_zero() {
        // Row 3 appears at positions 0, 2 and 3: (0 + 1e8) + 1 + -1e8 is 0 in float32 (1 is
        // lost to rounding next to 1e8), where another order would give 1.
        let rows = summed(&[3, 1, 3, 3], &[1e8, 2.0, 1.0, 5.0, 1.0, 1.0, -1e8, 7.0], 2);
        assert_eq!(rows.rows(), &[1, 3]);
        assert_eq!(rows.row(0), &[1.0, 5.0]);
        assert_eq!(rows.row(1), &[0.0, 10.0]);
        // A single -0.0 comes out +0.0, as it does added to a zero gradient.
        let zero = summed(&[0], &[-0.0], 1);
        assert_eq!(zero.row(0)[0].to_bits(), 0.0f32.to_bits());
    }

    #[test]
    fn fill_scatters_into_zeros() {
        let rows = summed(&[4, 0, 2], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 2);
        let mut dense = [9.0f32; 10];
        rows.fill(0, &mut dense);
        assert_eq!(dense, [3.0, 4.0, 0.0, 0.0, 5.0, 6.0, 0.0, 0.0, 1.0, 2.0]);
        // A window that cuts rows in half.
        let mut part = [9.0f32; 3];
        rows.fill(1, &mut part);
        assert_eq!(part, [4.0, 0.0, 0.0]);
        rows.fill(5, &mut part);
        assert_eq!(part, [6.0, 0.0, 0.0]);
        assert!(rows.meets(5, 1) && !rows.meets(6, 2) && rows.meets(6, 3));
    }

    #[test]
    fn blocks_met_are_distinct_and_ascending() {
        let rows = summed(&[0, 1, 5], &[0.0; 9], 3);
        // Elements 0..6 and 15..18 in blocks of 4.
        assert_eq!(rows.blocks_met(4), vec![0, 4, 12, 16]);
        assert!(summed(&[], &[], 3).blocks_met(4).is_empty());
    }
}
