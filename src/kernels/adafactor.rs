//! Adafactor, as `keras/src/optimizers/adafactor.py`, for every variable of a dtype group in
//! one call. The per-step scalars (`rho_t = min(lr, 1/sqrt(t))`, `beta_2_t = 1 - t^beta_2_decay`)
//! come from the caller in the variables' dtype; `w` is already weight-decayed and `g` final.
//! Every operation is in the variables' dtype `T`, in Keras's order:
//!
//! ```text
//! alpha_t = max(epsilon_2, RMS(w)) * rho_t
//! G = g * g + epsilon_1
//! rank >= 2 (the last two axes, rows x cols, are factored; leading axes are a batch):
//!     r = r * beta_2_t + (sum(G, -1) / cols) * (1 - beta_2_t)
//!     c = c * beta_2_t + (sum(G, -2) / rows) * (1 - beta_2_t)
//!     v = (r / (sum(r, -1) / rows))[..., :, None] * c[..., None, :]
//! rank < 2:
//!     v = v * beta_2_t + G * (1 - beta_2_t)
//! u = g / sqrt(v)
//! d = max(1, RMS(u) / clip_threshold)
//! w = w - (u / d) * alpha_t                    (u / d only when d != 1: u / 1 is u)
//! ```
//! with `RMS(x) = sqrt(sum(x * x) / n)`. Every sum is accumulated in `f64` from values rounded
//! to `T` (the squares too) and rounded once to `T` before it is divided; `max` keeps NaN.
//!
//! Nothing the size of a variable is allocated: `u` is recomputed wherever it is needed
//! (`g / sqrt(v)` is deterministic). A call makes three parallel passes over memory:
//! 1. read-only for rank >= 2 (sums of `w^2`, row and column sums of `G`); for rank < 2 it
//!    updates `v` and sums `w^2` and `u^2`;
//! 2. rank >= 2 only, read-only: the sum of `u^2` with `v` formed on the fly from `r` and `c`;
//! 3. every variable: write `v` (rank >= 2) and `w`.
//!
//! Between them the calling thread updates `r` and `c` and derives the per-variable scalars.
//!
//! Results are bitwise independent of the thread count and SIMD level: work items are cut at
//! positions that depend only on the shapes, each item sums its part in a fixed order (eight
//! `f64` lanes combined in a fixed tree), and the item sums are added in item order. A column
//! sum needs every row, so pass 1 cuts each matrix into at most `MAX_GROUPS` groups of rows
//! with one row of partial column sums each, added in group order afterwards.

use super::driver::{self, CHUNK};
use super::pool;
use super::real::{max_nan, Real};
use super::simd;
use std::sync::atomic::{AtomicUsize, Ordering};

const LANES: usize = 8;
/// Most groups of rows one matrix's column sums are split into in pass 1: the parallelism of
/// a single matrix, at the price of `cols` partial sums per group.
const MAX_GROUPS: usize = 16;

/// The per-step scalars, in the variables' dtype.
#[derive(Clone, Copy, Debug)]
pub struct Scalars<T> {
    pub rho_t: T,
    pub beta_2_t: T,
    pub one_minus_beta_2_t: T,
    pub epsilon_1: T,
    pub epsilon_2: T,
    pub clip_threshold: T,
}

impl<T: Real> Scalars<T> {
    /// Rounds each value once to `T`; `1 - beta_2_t` is then computed in `T`, as Keras does.
    #[must_use]
    pub fn new(
        rho_t: f64,
        beta_2_t: f64,
        epsilon_1: f64,
        epsilon_2: f64,
        clip_threshold: f64,
    ) -> Self {
        let beta_2_t = T::from_f64(beta_2_t);
        Scalars {
            rho_t: T::from_f64(rho_t),
            beta_2_t,
            one_minus_beta_2_t: T::ONE - beta_2_t,
            epsilon_1: T::from_f64(epsilon_1),
            epsilon_2: T::from_f64(epsilon_2),
            clip_threshold: T::from_f64(clip_threshold),
        }
    }
}

/// The factored second moment of a variable of shape `batch... x rows x cols` (C order).
pub struct Factors<'a, T> {
    pub batch: usize,
    pub rows: usize,
    pub cols: usize,
    /// Shape `batch... x rows`.
    pub r: &'a mut [T],
    /// Shape `batch... x cols`.
    pub c: &'a mut [T],
}

/// One variable of a call, C-contiguous: the parameter, its final gradient, its `velocity`
/// slot and, for rank >= 2, its `r` and `c` slots.
pub struct Variable<'a, T> {
    w: &'a mut [T],
    g: &'a [T],
    v: &'a mut [T],
    factors: Option<Factors<'a, T>>,
}

impl<'a, T> Variable<'a, T> {
    /// `None` if the lengths do not fit together (`w`, `g`, `v` of one length, which is
    /// `batch * rows * cols` for a factored variable, with `r` and `c` of `batch * rows` and
    /// `batch * cols` elements).
    #[must_use]
    pub fn new(
        w: &'a mut [T],
        g: &'a [T],
        v: &'a mut [T],
        factors: Option<Factors<'a, T>>,
    ) -> Option<Self> {
        let n = w.len();
        if g.len() != n || v.len() != n {
            return None;
        }
        if let Some(f) = &factors {
            let size = f.batch.checked_mul(f.rows)?.checked_mul(f.cols)?;
            if size != n
                || f.r.len() != f.batch.checked_mul(f.rows)?
                || f.c.len() != f.batch.checked_mul(f.cols)?
            {
                return None;
            }
        }
        Some(Variable { w, g, v, factors })
    }
}

/// A raw pointer shared by the threads of a pass, each touching only its own elements.
#[derive(Clone, Copy)]
struct Ptr<T>(*mut T);
// SAFETY: the pointers come from `&mut` borrows held for the whole call (`step`), and the
// passes give every element written to exactly one work item; elements read in a pass are
// written by no item of that pass.
unsafe impl<T: Send> Send for Ptr<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Sync for Ptr<T> {}

impl<T> Ptr<T> {
    /// The `n` elements from `start`, to write.
    ///
    /// # Safety
    /// `start + n` is within the buffer, and no other live reference covers these elements.
    #[inline(always)]
    #[allow(clippy::mut_from_ref)]
    unsafe fn slice<'s>(self, start: usize, n: usize) -> &'s mut [T] {
        if n == 0 {
            return &mut [];
        }
        // SAFETY: guaranteed by the caller.
        unsafe { std::slice::from_raw_parts_mut(self.0.add(start), n) }
    }

    /// The `n` elements from `start`, to read.
    ///
    /// # Safety
    /// `start + n` is within the buffer, and nothing writes these elements meanwhile.
    #[inline(always)]
    unsafe fn read<'s>(self, start: usize, n: usize) -> &'s [T] {
        if n == 0 {
            return &[];
        }
        // SAFETY: guaranteed by the caller.
        unsafe { std::slice::from_raw_parts(self.0.add(start), n) }
    }
}

/// One variable as the passes see it.
struct Var<T> {
    w: Ptr<T>,
    g: Ptr<T>,
    v: Ptr<T>,
    n: usize,
    /// `(batch, rows, cols)` of a factored variable.
    dims: Option<(usize, usize, usize)>,
    r: Ptr<T>,
    c: Ptr<T>,
    /// Offset of this variable's rows in the call's row buffers (`row_sums`, `normalized`).
    row0: usize,
    /// `alpha_t` and the denominator `d`, once known.
    alpha: T,
    denominator: T,
}

/// A work item: flattened rows `start..end` (of the `batch * rows` rows) of a factored
/// variable, or elements `start..end` of another; `out` is where its sums go in the pass's
/// output buffer.
#[derive(Clone, Copy, Debug)]
struct Item {
    var: usize,
    start: usize,
    end: usize,
    out: usize,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Pass {
    /// Pass 1: `out[0]` = sum of w^2, `out[1]` = sum of u^2 (rank < 2, after updating `v`),
    /// `out[2..2 + cols]` = the group's column sums of G (rank >= 2); row sums of G to
    /// `row_sums`.
    Reduce,
    /// Pass 2: `out[0]` = sum of u^2 (rank >= 2 items only).
    SumU,
    /// Pass 3: write `v` (rank >= 2) and `w`.
    Apply,
}

struct Ctx<'a, T> {
    vars: &'a [Var<T>],
    s: Scalars<T>,
    out: Ptr<f64>,
    row_sums: Ptr<f64>,
    /// `r / mean(r, -1)` of every factored variable, in `T`.
    normalized: &'a [T],
}

/// Elements per block of a reduction: a block's values are formed by a plain loop into a
/// buffer that stays in L1, then summed into the lanes (two simple loops vectorize where one
/// fused loop would not).
const BLOCK: usize = 256;

/// Sum of `f64` lanes in a fixed tree.
#[inline(always)]
fn combine(acc: &[f64; LANES]) -> f64 {
    ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]))
}

/// Adds `x` to the lanes in `f64`: element `j` to lane `j % LANES`.
#[inline(always)]
fn add_lanes<T: Real>(x: &[T], acc: &mut [f64; LANES]) {
    let mut chunks = x.chunks_exact(LANES);
    for ch in &mut chunks {
        for l in 0..LANES {
            acc[l] += ch[l].to_f64();
        }
    }
    for (l, &v) in chunks.remainder().iter().enumerate() {
        acc[l] += v.to_f64();
    }
}

/// The block's values in `f64`, in `wide`, for a block that two sums take (a loop of its own:
/// widening inside the loop that forms the values would halve its vector width for `f32`).
#[inline(always)]
fn widen<'a, T: Real>(x: &[T], wide: &'a mut [f64; BLOCK]) -> &'a [f64] {
    let w = &mut wide[..x.len()];
    for (y, &v) in w.iter_mut().zip(x) {
        *y = v.to_f64();
    }
    w
}

/// Adds `f(x)` for every element of `x` to the lanes, a block at a time (the lane of an
/// element is its index modulo `LANES`, as `BLOCK` is a multiple of it).
#[inline(always)]
fn add_mapped<T: Real>(x: &[T], acc: &mut [f64; LANES], f: impl Fn(T) -> T) {
    let mut buf = [T::ZERO; BLOCK];
    for block in x.chunks(BLOCK) {
        let b = &mut buf[..block.len()];
        for (y, &v) in b.iter_mut().zip(block) {
            *y = f(v);
        }
        add_lanes(b, acc);
    }
}

/// Sum of `x * x`, each square rounded to `T`, accumulated in `f64` in a fixed order.
#[inline(always)]
fn sum_squares<T: Real>(x: &[T]) -> f64 {
    let mut acc = [0.0f64; LANES];
    add_mapped(x, &mut acc, |v| v * v);
    combine(&acc)
}

/// Sum of `x` in `f64`, in a fixed order.
fn sum<T: Real>(x: &[T]) -> f64 {
    let mut acc = [0.0f64; LANES];
    add_lanes(x, &mut acc);
    combine(&acc)
}

/// `sqrt(T(sum) / T(n))`.
#[inline]
fn rms<T: Real>(sum: f64, n: usize) -> T {
    (T::from_f64(sum) / T::from_f64(n as f64)).sqrt()
}

/// One row of G = g^2 + epsilon_1: returns its sum and adds it to the column sums `cols`.
#[inline(always)]
fn row_of_g<T: Real>(g: &[T], epsilon_1: T, cols: &mut [f64]) -> f64 {
    let mut acc = [0.0f64; LANES];
    let mut buf = [T::ZERO; BLOCK];
    let mut wide = [0.0f64; BLOCK];
    for (block, col) in g.chunks(BLOCK).zip(cols.chunks_mut(BLOCK)) {
        let b = &mut buf[..block.len()];
        for (y, &v) in b.iter_mut().zip(block) {
            *y = v * v + epsilon_1;
        }
        let b = widen(b, &mut wide);
        for (cj, &y) in col.iter_mut().zip(b) {
            *cj += y;
        }
        add_lanes(b, &mut acc);
    }
    combine(&acc)
}

/// Adds one row's `u^2` (with `v = rn * c`) to the lanes.
#[inline(always)]
fn row_sum_u<T: Real>(g: &[T], rn: T, c: &[T], acc: &mut [f64; LANES]) {
    let mut buf = [T::ZERO; BLOCK];
    for (block, cb) in g.chunks(BLOCK).zip(c.chunks(BLOCK)) {
        let b = &mut buf[..block.len()];
        for ((y, &gj), &cj) in b.iter_mut().zip(block).zip(cb) {
            let u = gj / (rn * cj).sqrt();
            *y = u * u;
        }
        add_lanes(b, acc);
    }
}

/// The last pass over one row: `v = rn * c`, `w = w - (u / d) * alpha`.
#[inline(always)]
fn apply_row<T: Real, const DIVIDE: bool>(
    w: &mut [T],
    g: &[T],
    v: &mut [T],
    rn: T,
    c: &[T],
    d: T,
    alpha: T,
) {
    let n = w.len();
    let (g, v, c) = (&g[..n], &mut v[..n], &c[..n]);
    for j in 0..n {
        let vj = rn * c[j];
        v[j] = vj;
        let mut u = g[j] / vj.sqrt();
        if DIVIDE {
            u = u / d;
        }
        w[j] -= u * alpha;
    }
}

/// The last pass over a block of a variable of rank < 2 (`v` already updated).
#[inline(always)]
fn apply_flat<T: Real, const DIVIDE: bool>(w: &mut [T], g: &[T], v: &[T], d: T, alpha: T) {
    let n = w.len();
    let (g, v) = (&g[..n], &v[..n]);
    for j in 0..n {
        let mut u = g[j] / v[j].sqrt();
        if DIVIDE {
            u = u / d;
        }
        w[j] -= u * alpha;
    }
}

/// Pass 1 over a block of a variable of rank < 2: updates `v`, returns the sum of `u^2`.
#[inline(always)]
fn moment_flat<T: Real>(g: &[T], v: &mut [T], s: &Scalars<T>) -> f64 {
    let mut acc = [0.0f64; LANES];
    let mut buf = [T::ZERO; BLOCK];
    for (block, vb) in g.chunks(BLOCK).zip(v.chunks_mut(BLOCK)) {
        let b = &mut buf[..block.len()];
        for ((y, &gj), vj) in b.iter_mut().zip(block).zip(vb.iter_mut()) {
            let x = *vj * s.beta_2_t + (gj * gj + s.epsilon_1) * s.one_minus_beta_2_t;
            *vj = x;
            let u = gj / x.sqrt();
            *y = u * u;
        }
        add_lanes(b, &mut acc);
    }
    combine(&acc)
}

/// Runs one work item of a pass.
///
/// # Safety
/// The item belongs to this pass's list over `ctx.vars` (see `Ptr` for the disjointness).
#[inline(always)]
unsafe fn run_item<T: Real>(pass: Pass, ctx: &Ctx<'_, T>, it: &Item) {
    let var = &ctx.vars[it.var];
    let s = &ctx.s;
    let (start, len) = (it.start, it.end - it.start);
    match (pass, var.dims) {
        (Pass::Reduce, Some((_, _, cols))) => {
            // SAFETY: the item owns its two sums and `cols` column sums in `out`, and rows
            // start..end of `row_sums`; w and g are only read in this pass.
            unsafe {
                let out = ctx.out.slice(it.out, 2 + cols);
                let (sums, col_sums) = out.split_at_mut(2);
                sums[0] = sum_squares(var.w.read(start * cols, len * cols));
                let row_sums = ctx.row_sums.slice(var.row0 + start, len);
                for (k, rs) in row_sums.iter_mut().enumerate() {
                    let g = var.g.read((start + k) * cols, cols);
                    *rs = row_of_g(g, s.epsilon_1, col_sums);
                }
            }
        }
        (Pass::Reduce, None) => {
            // SAFETY: the item owns elements start..end of v and its two sums; w and g are
            // only read in this pass.
            unsafe {
                let out = ctx.out.slice(it.out, 2);
                out[0] = sum_squares(var.w.read(start, len));
                out[1] = moment_flat(var.g.read(start, len), var.v.slice(start, len), s);
            }
        }
        (Pass::SumU, Some((_, rows, cols))) => {
            let mut acc = [0.0f64; LANES];
            for row in start..it.end {
                let rn = ctx.normalized[var.row0 + row];
                // SAFETY: g and c are only read in this pass; the item owns its sum.
                unsafe {
                    let c = var.c.read(row / rows * cols, cols);
                    row_sum_u(var.g.read(row * cols, cols), rn, c, &mut acc);
                }
            }
            // SAFETY: the item owns its sum.
            unsafe { ctx.out.slice(it.out, 1)[0] = combine(&acc) };
        }
        (Pass::SumU, None) => {}
        (Pass::Apply, Some((_, rows, cols))) => {
            let (d, alpha) = (var.denominator, var.alpha);
            for row in start..it.end {
                let rn = ctx.normalized[var.row0 + row];
                // SAFETY: the item owns rows start..end of w and v; g and c are only read.
                unsafe {
                    let (w, g, v) = (
                        var.w.slice(row * cols, cols),
                        var.g.read(row * cols, cols),
                        var.v.slice(row * cols, cols),
                    );
                    let c = var.c.read(row / rows * cols, cols);
                    if d == T::ONE {
                        apply_row::<T, false>(w, g, v, rn, c, d, alpha);
                    } else {
                        apply_row::<T, true>(w, g, v, rn, c, d, alpha);
                    }
                }
            }
        }
        (Pass::Apply, None) => {
            let (d, alpha) = (var.denominator, var.alpha);
            // SAFETY: the item owns elements start..end of w; g and v are only read.
            unsafe {
                let (w, g, v) = (
                    var.w.slice(start, len),
                    var.g.read(start, len),
                    var.v.read(start, len),
                );
                if d == T::ONE {
                    apply_flat::<T, false>(w, g, v, d, alpha);
                } else {
                    apply_flat::<T, true>(w, g, v, d, alpha);
                }
            }
        }
    }
}

simd::dispatch! {
    /// `run_item` compiled for `level`.
    ///
    /// # Safety
    /// As `run_item`.
    unsafe fn run_item_at<T: Real>(level, pass: Pass, ctx: &Ctx<'_, T>, it: &Item) => run_item
}

/// Runs every item of a pass, on the pool when `parallel`: threads take the next item from a
/// shared counter, and each item writes only its own outputs, so who runs what does not
/// matter.
fn run_pass<T: Real>(pass: Pass, ctx: &Ctx<'_, T>, items: &[Item], parallel: bool) {
    let level = simd::current();
    let parts = if parallel {
        pool::num_threads().min(items.len()).max(1)
    } else {
        1
    };
    let next = AtomicUsize::new(0);
    pool::run_parts(parts, |_| {
        while let Some(it) = items.get(next.fetch_add(1, Ordering::Relaxed)) {
            // SAFETY: the items are this pass's.
            unsafe { run_item_at(level, pass, ctx, it) };
        }
    });
}

/// Appends the items of `units` rows or elements of variable `var`, `per_item` units each,
/// with `out_step` outputs each from `*out` on.
fn push_items(
    items: &mut Vec<Item>,
    var: usize,
    units: (usize, usize),
    per_item: usize,
    out: &mut usize,
    out_step: usize,
) {
    let (mut start, end) = units;
    while start < end {
        let stop = (start + per_item).min(end);
        items.push(Item {
            var,
            start,
            end: stop,
            out: *out,
        });
        *out += out_step;
        start = stop;
    }
}

/// The items of pass 1 (in variable order), and the size of its output buffer.
fn reduce_items<T>(vars: &[Var<T>]) -> (Vec<Item>, usize) {
    let mut items = Vec::new();
    let mut out = 0;
    for (k, var) in vars.iter().enumerate() {
        let Some((batch, rows, cols)) = var.dims else {
            push_items(&mut items, k, (0, var.n), CHUNK, &mut out, 2);
            continue;
        };
        let size = rows * cols;
        if size == 0 {
            continue;
        }
        let groups = (size / CHUNK).clamp(1, MAX_GROUPS).min(rows);
        for m in 0..batch {
            for q in 0..groups {
                items.push(Item {
                    var: k,
                    start: m * rows + rows * q / groups,
                    end: m * rows + rows * (q + 1) / groups,
                    out,
                });
                out += 2 + cols;
            }
        }
    }
    (items, out)
}

/// The items of passes 2 and 3 (in variable order): about `CHUNK` elements each, whole rows of
/// a factored variable. `out` is the item's index.
fn apply_items<T>(vars: &[Var<T>]) -> Vec<Item> {
    let mut items = Vec::new();
    let mut out = 0;
    for (k, var) in vars.iter().enumerate() {
        match var.dims {
            Some((batch, rows, cols)) if cols > 0 => {
                let per_item = (CHUNK / cols).max(1);
                push_items(&mut items, k, (0, batch * rows), per_item, &mut out, 1);
            }
            Some(_) => {}
            None => push_items(&mut items, k, (0, var.n), CHUNK, &mut out, 1),
        }
    }
    items
}

/// The items of variable `k` in a list in variable order.
fn items_of(items: &[Item], k: usize) -> &[Item] {
    let lo = items.partition_point(|it| it.var < k);
    let hi = items.partition_point(|it| it.var <= k);
    &items[lo..hi]
}

/// The passes' view of the variables, and the number of factored rows in all.
fn views<T: Real>(vars: &mut [Variable<'_, T>]) -> (Vec<Var<T>>, usize) {
    let mut row0 = 0;
    let mut views = Vec::with_capacity(vars.len());
    for var in vars.iter_mut() {
        let (dims, r, c) = match var.factors.as_mut() {
            Some(f) => (
                Some((f.batch, f.rows, f.cols)),
                Ptr(f.r.as_mut_ptr()),
                Ptr(f.c.as_mut_ptr()),
            ),
            None => (None, Ptr(std::ptr::null_mut()), Ptr(std::ptr::null_mut())),
        };
        views.push(Var {
            w: Ptr(var.w.as_mut_ptr()),
            g: Ptr(var.g.as_ptr().cast_mut()),
            v: Ptr(var.v.as_mut_ptr()),
            n: var.w.len(),
            dims,
            r,
            c,
            row0,
            alpha: T::ZERO,
            denominator: T::ONE,
        });
        if let Some((batch, rows, _)) = dims {
            row0 += batch * rows;
        }
    }
    (views, row0)
}

/// Between passes 1 and 2, on the calling thread: `alpha_t` of every variable, the
/// denominator of those of rank < 2, and for the others `r`, `c` and `r / mean(r, -1)` (into
/// `normalized`), from pass 1's sums (`items`, `out`, `row_sums`).
fn between_passes<T: Real>(
    views: &mut [Var<T>],
    s: &Scalars<T>,
    items: &[Item],
    out: &[f64],
    row_sums: &[f64],
    normalized: &mut [T],
) {
    let mut col_sums = Vec::new();
    for (k, var) in views.iter_mut().enumerate() {
        let mine = items_of(items, k);
        let w_sum = mine.iter().fold(0.0, |a, it| a + out[it.out]);
        var.alpha = max_nan(s.epsilon_2, rms::<T>(w_sum, var.n)) * s.rho_t;
        let Some((batch, rows, cols)) = var.dims else {
            let u_sum = mine.iter().fold(0.0, |a, it| a + out[it.out + 1]);
            var.denominator = max_nan(T::ONE, rms::<T>(u_sum, var.n) / s.clip_threshold);
            continue;
        };
        // The groups' column sums, added in group order.
        col_sums.clear();
        col_sums.resize(batch * cols, 0.0f64);
        for it in mine {
            let m = it.start / rows;
            let part = &out[it.out + 2..it.out + 2 + cols];
            for (a, b) in col_sums[m * cols..(m + 1) * cols].iter_mut().zip(part) {
                *a += b;
            }
        }
        // SAFETY: no pass runs now; these borrows end before pass 2 reads c.
        let (r, c) = unsafe { (var.r.slice(0, batch * rows), var.c.slice(0, batch * cols)) };
        let (beta, one_minus_beta) = (s.beta_2_t, s.one_minus_beta_2_t);
        let (t_rows, t_cols) = (T::from_f64(rows as f64), T::from_f64(cols as f64));
        let rows_of_var = var.row0..var.row0 + batch * rows;
        for (ri, &sum) in r.iter_mut().zip(&row_sums[rows_of_var.clone()]) {
            *ri = *ri * beta + (T::from_f64(sum) / t_cols) * one_minus_beta;
        }
        for (ci, &sum) in c.iter_mut().zip(&col_sums) {
            *ci = *ci * beta + (T::from_f64(sum) / t_rows) * one_minus_beta;
        }
        if rows > 0 {
            let rn = &mut normalized[rows_of_var];
            for (rm, rnm) in r.chunks_exact(rows).zip(rn.chunks_exact_mut(rows)) {
                let row_mean = T::from_f64(sum(rm)) / t_rows;
                for (x, &ri) in rnm.iter_mut().zip(rm) {
                    *x = ri / row_mean;
                }
            }
        }
    }
}

/// One Adafactor step for every variable, in place.
pub fn step<T: Real>(vars: &mut [Variable<'_, T>], s: &Scalars<T>) {
    let (mut views, rows) = views(vars);
    let total: usize = views.iter().map(|v| v.n).sum();
    let parallel = driver::worth_parallel(total);

    let (reduce, out_len) = reduce_items(&views);
    let mut out = vec![0.0f64; out_len];
    let mut row_sums = vec![0.0f64; rows];
    let ctx = Ctx {
        vars: &views,
        s: *s,
        out: Ptr(out.as_mut_ptr()),
        row_sums: Ptr(row_sums.as_mut_ptr()),
        normalized: &[],
    };
    run_pass(Pass::Reduce, &ctx, &reduce, parallel);

    let mut normalized = vec![T::ZERO; rows];
    between_passes(&mut views, s, &reduce, &out, &row_sums, &mut normalized);

    let apply = apply_items(&views);
    if views.iter().any(|v| v.dims.is_some()) {
        let mut u_parts = vec![0.0f64; apply.len()];
        let ctx = Ctx {
            vars: &views,
            s: *s,
            out: Ptr(u_parts.as_mut_ptr()),
            row_sums: Ptr(std::ptr::null_mut()),
            normalized: &normalized,
        };
        run_pass(Pass::SumU, &ctx, &apply, parallel);
        for (k, var) in views.iter_mut().enumerate() {
            if var.dims.is_some() {
                let u_sum = items_of(&apply, k)
                    .iter()
                    .fold(0.0, |a, it| a + u_parts[it.out]);
                var.denominator = max_nan(T::ONE, rms::<T>(u_sum, var.n) / s.clip_threshold);
            }
        }
    }

    let ctx = Ctx {
        vars: &views,
        s: *s,
        out: Ptr(std::ptr::null_mut()),
        row_sums: Ptr(std::ptr::null_mut()),
        normalized: &normalized,
    };
    run_pass(Pass::Apply, &ctx, &apply, parallel);
    driver::ended(total);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::simd::Level;
    use crate::kernels::xorshift::Rng;
    use std::sync::Mutex;

    /// Tests that change the process-wide thread count or SIMD level take this lock.
    static GLOBAL: Mutex<()> = Mutex::new(());

    /// The final states of one run, in float64 and float32.
    type Run = (Vec<State<f64>>, Vec<State<f32>>);

    /// Magnitudes in [0.5, 1.5) with a random sign: every float32 sum of the kernel is then
    /// exact in float64 (bounded exponent range), whatever the order.
    fn values<T: Real>(rng: &mut Rng, n: usize) -> Vec<T> {
        (0..n)
            .map(|_| {
                let m = 0.5 + rng.unit();
                T::from_f64(if rng.unit() < 0.5 { -m } else { m })
            })
            .collect()
    }

    /// One variable's arrays, owned.
    #[derive(Clone, Debug, PartialEq)]
    struct State<T> {
        shape: Vec<usize>,
        w: Vec<T>,
        v: Vec<T>,
        r: Vec<T>,
        c: Vec<T>,
    }

    fn dims(shape: &[usize]) -> Option<(usize, usize, usize)> {
        let nd = shape.len();
        (nd >= 2).then(|| {
            (
                shape[..nd - 2].iter().product(),
                shape[nd - 2],
                shape[nd - 1],
            )
        })
    }

    fn state<T: Real>(rng: &mut Rng, shape: &[usize]) -> State<T> {
        let n = shape.iter().product();
        let (rn, cn) = dims(shape).map_or((0, 0), |(b, r, c)| (b * r, b * c));
        State {
            shape: shape.to_vec(),
            w: values(rng, n),
            v: vec![T::ZERO; n],
            r: vec![T::ZERO; rn],
            c: vec![T::ZERO; cn],
        }
    }

    /// Keras's update_step for one variable as plain scalar loops, sums in sequence.
    fn reference<T: Real>(st: &mut State<T>, g: &[T], s: &Scalars<T>) {
        let n = st.w.len();
        let rms = |x: f64| (T::from_f64(x) / T::from_f64(n as f64)).sqrt();
        let big_g = |x: T| x * x + s.epsilon_1;
        let sum_w: f64 = st.w.iter().map(|&x| (x * x).to_f64()).sum();
        let alpha = max_nan(s.epsilon_2, rms(sum_w)) * s.rho_t;
        let (beta, omb) = (s.beta_2_t, s.one_minus_beta_2_t);
        if let Some((batch, rows, cols)) = dims(&st.shape) {
            let at = |m: usize, i: usize, j: usize| (m * rows + i) * cols + j;
            for m in 0..batch {
                for i in 0..rows {
                    let sum: f64 = (0..cols).map(|j| big_g(g[at(m, i, j)]).to_f64()).sum();
                    let mean = T::from_f64(sum) / T::from_f64(cols as f64);
                    let r = &mut st.r[m * rows + i];
                    *r = *r * beta + mean * omb;
                }
                for j in 0..cols {
                    let sum: f64 = (0..rows).map(|i| big_g(g[at(m, i, j)]).to_f64()).sum();
                    let mean = T::from_f64(sum) / T::from_f64(rows as f64);
                    let c = &mut st.c[m * cols + j];
                    *c = *c * beta + mean * omb;
                }
                let sum: f64 = (0..rows).map(|i| st.r[m * rows + i].to_f64()).sum();
                let row_mean = T::from_f64(sum) / T::from_f64(rows as f64);
                for i in 0..rows {
                    for j in 0..cols {
                        st.v[at(m, i, j)] = (st.r[m * rows + i] / row_mean) * st.c[m * cols + j];
                    }
                }
            }
        } else {
            for (v, &x) in st.v.iter_mut().zip(g) {
                *v = *v * beta + big_g(x) * omb;
            }
        }
        let mut u: Vec<T> = g.iter().zip(&st.v).map(|(&x, &v)| x / v.sqrt()).collect();
        let sum_u: f64 = u.iter().map(|&x| (x * x).to_f64()).sum();
        let d = max_nan(T::ONE, rms(sum_u) / s.clip_threshold);
        if d != T::ONE {
            for x in &mut u {
                *x = *x / d;
            }
        }
        for (w, &x) in st.w.iter_mut().zip(&u) {
            *w -= x * alpha;
        }
    }

    fn run_kernel<T: Real>(states: &mut [State<T>], grads: &[Vec<T>], s: &Scalars<T>) {
        let mut vars: Vec<Variable<'_, T>> = states
            .iter_mut()
            .zip(grads)
            .map(|(st, g)| {
                let factors = dims(&st.shape).map(|(batch, rows, cols)| Factors {
                    batch,
                    rows,
                    cols,
                    r: &mut st.r[..],
                    c: &mut st.c[..],
                });
                Variable::new(&mut st.w, g, &mut st.v, factors).expect("consistent lengths")
            })
            .collect();
        step(&mut vars, s);
    }

    const SHAPES: &[&[usize]] = &[
        &[],
        &[1],
        &[7],
        &[3, 5],
        &[2, 3, 4],
        &[1000, 33],
        &[64, 2048],
        &[3, 40, 300],
        &[300, 1000],
        &[2, 100, 700],
        &[1, 1],
        &[5, 1],
        &[1, 70_000],
        &[0],
        &[3, 0],
        &[0, 4],
        &[2, 0, 3],
        &[2, 3, 0],
        &[40_000],
    ];

    /// `steps` steps of every shape in one call per step, from seed `seed`; returns the
    /// final states and, separately, the reference's.
    fn trajectory<T: Real>(
        seed: u64,
        shapes: &[&[usize]],
        steps: usize,
        clip_threshold: f64,
    ) -> (Vec<State<T>>, Vec<State<T>>) {
        let mut rng = Rng(seed);
        let mut states: Vec<State<T>> = shapes.iter().map(|s| state(&mut rng, s)).collect();
        let mut want = states.clone();
        for t in 1..=steps {
            let grads: Vec<Vec<T>> = states.iter().map(|s| values(&mut rng, s.w.len())).collect();
            let tf = t as f64;
            let s = Scalars::<T>::new(
                (0.01f64).min(1.0 / tf.sqrt()),
                1.0 - tf.powf(-0.8),
                1e-30,
                1e-3,
                clip_threshold,
            );
            run_kernel(&mut states, &grads, &s);
            for (st, g) in want.iter_mut().zip(&grads) {
                reference(st, g, &s);
            }
        }
        (states, want)
    }

    fn bits<T: Real>(x: &[T]) -> Vec<u64> {
        x.iter().map(|v| v.to_f64().to_bits()).collect()
    }

    fn assert_bitwise<T: Real>(got: &[State<T>], want: &[State<T>]) {
        for (a, b) in got.iter().zip(want) {
            for (what, x, y) in [
                ("w", &a.w, &b.w),
                ("v", &a.v, &b.v),
                ("r", &a.r, &b.r),
                ("c", &a.c, &b.c),
            ] {
                assert!(bits(x) == bits(y), "{what} of shape {:?} differs", a.shape);
            }
        }
    }

    #[test]
    fn float32_matches_scalar_loops_bitwise() {
        for clip_threshold in [1.0, 0.25, 100.0] {
            let (got, want) = trajectory::<f32>(7, SHAPES, 4, clip_threshold);
            assert_bitwise(&got, &want);
            // Every non-empty variable moved (the comparison is not vacuous).
            let mut rng = Rng(7);
            for (a, shape) in got.iter().zip(SHAPES) {
                let before = state::<f32>(&mut rng, shape);
                assert!(
                    a.w.is_empty() || a.w != before.w,
                    "shape {shape:?} did not move"
                );
            }
        }
    }

    #[test]
    fn float64_matches_scalar_loops() {
        for clip_threshold in [1.0, 0.25] {
            let (got, want) = trajectory::<f64>(11, SHAPES, 4, clip_threshold);
            for (a, b) in got.iter().zip(&want) {
                for (x, y) in [(&a.w, &b.w), (&a.v, &b.v), (&a.r, &b.r), (&a.c, &b.c)] {
                    for (p, q) in x.iter().zip(y.iter()) {
                        let close =
                            (p - q).abs() <= 1e-13 * q.abs().max(1.0) || (p.is_nan() && q.is_nan());
                        assert!(close, "shape {:?}: {p} vs {q}", a.shape);
                    }
                }
            }
        }
    }

    #[test]
    fn empty_matrices_take_nan_means_as_numpy() {
        // mean over an empty axis is 0 / 0: r of a (3, 0) variable and c of a (0, 4) one.
        let (got, _) = trajectory::<f32>(3, &[&[3, 0], &[0, 4]], 1, 1.0);
        assert!(got[0].r.len() == 3 && got[0].r.iter().all(|x| x.is_nan()));
        assert!(got[1].c.len() == 4 && got[1].c.iter().all(|x| x.is_nan()));
    }

    #[test]
    fn non_finite_scale_multiplies_through() {
        let mut rng = Rng(5);
        for shape in [&[6usize][..], &[3, 4]] {
            for bad in [f32::NAN, f32::INFINITY] {
                let mut st = state::<f32>(&mut rng, shape);
                st.w[1] = bad;
                let g = values(&mut rng, st.w.len());
                let s = Scalars::<f32>::new(0.01, 0.0, 1e-30, 1e-3, 1.0);
                let mut want = st.clone();
                reference(&mut want, &g, &s);
                run_kernel(std::slice::from_mut(&mut st), std::slice::from_ref(&g), &s);
                // alpha_t is NaN or inf: it reaches every element.
                assert!(st.w.iter().all(|x| !x.is_finite()));
                assert_bitwise(std::slice::from_ref(&st), std::slice::from_ref(&want));
            }
        }
    }

    #[test]
    fn same_bits_for_every_thread_count_and_simd_level() {
        let _guard = GLOBAL
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let before = pool::num_threads();
        let best = simd::detected();
        let mut runs: Vec<Run> = Vec::new();
        for threads in [1, 2, 3] {
            pool::set_num_threads(threads);
            for level in [Level::Baseline, Level::Avx2, Level::Avx512] {
                if simd::set(Some(level)).is_err() {
                    continue;
                }
                assert_eq!(simd::current(), level);
                runs.push((
                    trajectory::<f64>(13, SHAPES, 3, 0.5).0,
                    trajectory::<f32>(13, SHAPES, 3, 0.5).0,
                ));
            }
        }
        let _ = simd::set(Some(best));
        pool::set_num_threads(before);
        assert!(runs.len() >= 3);
        for (f64s, f32s) in &runs[1..] {
            assert_bitwise(f64s, &runs[0].0);
            assert_bitwise(f32s, &runs[0].1);
        }
    }

    #[test]
    fn variable_refuses_inconsistent_lengths() {
        let (mut w, g, mut v) = (vec![0.0f32; 6], vec![0.0f32; 6], vec![0.0f32; 6]);
        let (mut r, mut c) = (vec![0.0f32; 2], vec![0.0f32; 3]);
        let ok = |w: &mut [f32],
                  v: &mut [f32],
                  r: &mut [f32],
                  c: &mut [f32],
                  dims: (usize, usize, usize)| {
            let f = Factors {
                batch: dims.0,
                rows: dims.1,
                cols: dims.2,
                r,
                c,
            };
            Variable::new(w, &g, v, Some(f)).is_some()
        };
        assert!(ok(&mut w, &mut v, &mut r, &mut c, (1, 2, 3)));
        assert!(!ok(&mut w, &mut v, &mut r, &mut c, (1, 3, 2)));
        assert!(!ok(&mut w, &mut v, &mut r, &mut c, (2, 1, 3)));
        assert!(!ok(&mut w, &mut v[..5], &mut r, &mut c, (1, 2, 3)));
        assert!(!ok(&mut w, &mut v, &mut r, &mut c, (usize::MAX, 2, 3)));
        assert!(Variable::new(&mut w, &g[..5], &mut v, None).is_none());
        assert!(Variable::new(&mut w, &g, &mut v, None).is_some());
    }
}
