//! The one multi-tensor driver every rule runs through.
//!
//! A call covers all tensors of one dtype group. Each tensor is cut into work items of at
//! most `CHUNK` elements; all items of the call form one flat list that the calling thread and
//! the pool's workers claim item by item (`pool::run_parts`), so many small tensors and a few
//! huge ones balance across threads and the caller never waits for a worker to wake up. Small
//! calls run on the calling thread (`worth_parallel`): waking the pool would cost more than
//! the work.
//!
//! Within an item, the fused pipeline of `prologue` runs block by block (`BLOCK` elements,
//! L1-resident): load and transform the gradient, decay, update, EMA, write back. When an item
//! needs none of that (plain update, every operand contiguous), the rule runs over the whole
//! item directly.
//!
//! Results are bitwise independent of the thread count and SIMD level: element-wise stages do
//! not depend on how elements are grouped, and norms are reduced in a fixed order
//! (`reduce`).

use super::layout::Operand;
use super::pool;
use super::prologue::{self, Clip, Prologue};
use super::real::Real;
use super::reduce::sum_squares;
use super::rows::Rows;
use super::simd::{self, Level};
use super::Rule;
use std::sync::atomic::{AtomicU64, Ordering};

/// Elements per block of the fused pipeline.
pub const BLOCK: usize = 512;
/// Elements per work item: the unit the threads claim one by one, and of the norm reduction
/// order (so it depends on nothing but the shapes).
pub const CHUNK: usize = 1 << 15;
/// Calls smaller than this run on the calling thread.
pub const INLINE_BELOW: usize = 1 << 16;
/// Calls from this size use the pool even when its worker is parked (see `worth_parallel`).
pub const COLD_PARALLEL_FROM: usize = 1 << 19;
/// A call this soon after the end of the previous large one finds the worker awake.
const WARM_NS: u64 = 15_000;
/// How many rows ahead a rows-only pass asks for the rows it will update (see
/// `Operand::prefetch`).
const PREFETCH_ROWS: usize = 6;
/// The most slots a rule may have.
pub const MAX_SLOTS: usize = 4;
/// The most per-tensor sums a rule may ask for (`Rule::sums`).
pub const MAX_SUMS: usize = 4;

/// What a call does to each tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The full pipeline: gradient transforms, decay, the rule, EMA.
    Update,
    /// Gradient accumulation only (`acc = g + acc` after unscaling), then EMA.
    AccumulateOnly,
    /// EMA only, for variables that took no part in the step.
    EmaOnly,
}

/// One tensor of a call: the parameter and the operands aligned with it.
#[derive(Debug)]
pub struct Tensor<T: Real> {
    pub len: usize,
    /// Logical shape, used to walk strided operands.
    pub shape: Box<[usize]>,
    pub param: Operand<T>,
    /// `None` only in `Mode::EmaOnly`.
    pub grad: Option<Grad<T>>,
    pub slots: Vec<Operand<T>>,
    pub accumulator: Option<Operand<T>>,
    pub average: Option<Operand<T>>,
    /// Weight decay applies to this tensor.
    pub decay: bool,
}

/// A gradient: of the parameters' dtype, or of the other float dtype, converted block by
/// block as it is read (no copy of the whole gradient), or row-sparse (`rows`: Keras's
/// `IndexedSlices`, duplicates already summed).
#[derive(Debug)]
pub enum Grad<T: Real> {
    Same(Operand<T>),
    Cast(Operand<T::Other>),
    Rows(Rows<T>),
}

impl<T: Real> Grad<T> {
    /// The operand when it can be read in place (same dtype, contiguous).
    fn direct(&self) -> Option<&Operand<T>> {
        match self {
            Grad::Same(op) if op.is_direct() => Some(op),
            _ => None,
        }
    }
}

impl<T: Real> Tensor<T> {
    /// Whether every operand but the gradient can be read in place.
    fn state_direct(&self) -> bool {
        self.param.is_direct()
            && self.slots.iter().all(Operand::is_direct)
            && self.accumulator.as_ref().is_none_or(Operand::is_direct)
            && self.average.as_ref().is_none_or(Operand::is_direct)
    }

    /// The summed rows of a row-sparse gradient.
    fn rows(&self) -> Option<&Rows<T>> {
        match &self.grad {
            Some(Grad::Rows(rows)) => Some(rows),
            _ => None,
        }
    }

    /// Whether the gradient is row-sparse and no accumulator adds to it: it is then zero
    /// outside its rows, as the rule sees it.
    fn zero_outside_rows(&self, pro: &Prologue<T>) -> bool {
        self.rows().is_some() && !(pro.accumulation_steps.is_some() && self.accumulator.is_some())
    }
}

/// Whether a call in `mode` updates only the rows of tensor `t`'s row-sparse gradient: where
/// the elements outside them would not change (the rule leaves an element with a zero gradient
/// as it is, and neither weight decay nor an accumulated gradient touches them), or in lazy
/// mode, for any element-wise rule. An accumulation-only call adds the rows to the
/// accumulator. The EMA then runs over the whole tensor in a pass of its own.
fn rows_only<T: Real, R: Rule<T>>(rule: &R, t: &Tensor<T>, pro: &Prologue<T>, mode: Mode) -> bool {
    if t.rows().is_none() {
        return false;
    }
    match mode {
        Mode::EmaOnly => false,
        Mode::AccumulateOnly => true,
        Mode::Update => {
            let decays = t.decay && pro.weight_decay.is_some();
            rule.sums() == 0
                && t.zero_outside_rows(pro)
                && (pro.lazy || (rule.rows_only() && !decays))
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Item {
    tensor: usize,
    start: usize,
    end: usize,
}

/// The gradient clipping stage after the norms are known.
#[derive(Clone, Copy)]
enum ClipStage<'a, T> {
    None,
    /// `clipnorm` and one denominator per tensor.
    PerTensor(T, &'a [T]),
    Scale(T),
    Value(T),
}

struct Ctx<'a, T: Real, R> {
    rule: &'a R,
    tensors: &'a [Tensor<T>],
    pro: &'a Prologue<T>,
    mode: Mode,
    clip: ClipStage<'a, T>,
    /// One scalar per tensor from the rule's own reduction (empty for element-wise rules).
    scalars: &'a [T],
    /// Per tensor, whether this call updates only the rows of its gradient (`rows_only`); the
    /// work items of such a tensor count its distinct rows rather than its elements.
    rows_only: RowsOnly<'a>,
}

/// Per tensor, whether the call updates only its gradient's rows; empty (all false) when no
/// gradient of the call is row-sparse.
#[derive(Clone, Copy)]
struct RowsOnly<'a>(&'a [bool]);

impl RowsOnly<'_> {
    fn of(self, tensor: usize) -> bool {
        self.0.get(tensor).copied().unwrap_or(false)
    }
}

impl<T: Real, R> Ctx<'_, T, R> {
    fn scalar(&self, tensor: usize) -> T {
        self.scalars.get(tensor).copied().unwrap_or(T::ONE)
    }
}

/// The items of a reduction over whole tensors: `CHUNK` elements each, cut at positions that
/// depend on the shapes alone.
fn work_items<T: Real>(tensors: &[Tensor<T>]) -> Vec<Item> {
    work_items_of(tensors, CHUNK, |_| Some(false))
}

/// The update pass's items when it runs on the pool: at least `4 * threads` of them, so the
/// threads claiming them end close together (a 100K call in 32K items splits 64K / 36K), and
/// no smaller than `4 * BLOCK`. Only the reductions' items must depend on the shapes alone.
fn update_items<T: Real>(
    tensors: &[Tensor<T>],
    total: usize,
    rows_only: RowsOnly<'_>,
) -> Vec<Item> {
    let chunk = (total / (4 * pool::num_threads())).clamp(4 * BLOCK, CHUNK);
    work_items_of(tensors, chunk, |i| Some(rows_only.of(i)))
}

/// Items of about `chunk` elements over the tensors for which `pick` gives `Some(rows_only)`:
/// ranges of elements, or for a rows-only tensor ranges of its distinct rows.
fn work_items_of<T: Real>(
    tensors: &[Tensor<T>],
    chunk: usize,
    pick: impl Fn(usize) -> Option<bool>,
) -> Vec<Item> {
    let mut items = Vec::with_capacity(tensors.len());
    for (i, t) in tensors.iter().enumerate() {
        let Some(rows_only) = pick(i) else { continue };
        let (len, step) = match t.rows() {
            Some(rows) if rows_only => (rows.rows().len(), (chunk / rows.row_len().max(1)).max(1)),
            _ => (t.len, chunk),
        };
        let mut start = 0;
        while start < len {
            let end = (start + step).min(len);
            items.push(Item {
                tensor: i,
                start,
                end,
            });
            start = end;
        }
    }
    items
}

/// The elements a call touches in tensor `t`.
fn touched<T: Real>(t: &Tensor<T>, rows_only: bool) -> usize {
    match t.rows() {
        Some(rows) if rows_only => rows.len(),
        _ => t.len,
    }
}

/// Runs one call. The bindings have validated every operand: each is alive, holds `len`
/// elements in its layout, no two writable operands overlap, the rows of a row-sparse
/// gradient are within the tensor, and the options a mode needs (gradients, accumulators,
/// averages) are present on every tensor.
pub fn run<T: Real, R: Rule<T>>(rule: &R, tensors: &[Tensor<T>], pro: &Prologue<T>, mode: Mode) {
    // Empty when no gradient of the call is row-sparse (the common call allocates nothing).
    let flags: Vec<bool> = if tensors.iter().any(|t| t.rows().is_some()) {
        tensors
            .iter()
            .map(|t| rows_only(rule, t, pro, mode))
            .collect()
    } else {
        Vec::new()
    };
    let rows_only = RowsOnly(&flags);
    let total: usize = tensors
        .iter()
        .enumerate()
        .map(|(i, t)| touched(t, rows_only.of(i)))
        .sum();
    let parallel = worth_parallel(total);
    let level = simd::current();

    // Norm clipping needs the norms of the final gradients before anything changes.
    let mut denominators = Vec::new();
    let clip = match (mode, pro.clip) {
        (Mode::Update, Clip::Norm(c) | Clip::GlobalNorm(c, _)) => {
            let sums = gradient_sums(level, tensors, pro, parallel);
            if let Clip::GlobalNorm(_, inverse) = pro.clip {
                let global: f64 = sums.iter().sum();
                ClipStage::Scale(prologue::global_norm_scale(global, c, inverse))
            } else {
                denominators.extend(sums.iter().map(|&s| prologue::norm_denominator(s, c)));
                ClipStage::PerTensor(c, &denominators)
            }
        }
        (Mode::Update, Clip::Value(c)) => ClipStage::Value(c),
        (Mode::Update, Clip::Scale(s)) => ClipStage::Scale(s),
        _ => ClipStage::None,
    };
    let mut ctx = Ctx {
        rule,
        tensors,
        pro,
        mode,
        clip,
        scalars: &[],
        rows_only,
    };
    // A rule that needs whole-tensor sums (Lamb) gets them from a read-only pass first (such a
    // rule never runs rows-only). At most `MAX_SUMS` (Lamb asks for 2): the per-item buffers
    // are fixed arrays.
    let k = rule.sums().min(MAX_SUMS);
    let scalars: Vec<T>;
    if mode == Mode::Update && k > 0 {
        let items = work_items(tensors);
        let partials = map_items(&items, parallel, k, |it, out| {
            out.copy_from_slice(&rule_reduce_at(level, &ctx, it));
        });
        let mut sums = vec![vec![0.0f64; k]; tensors.len()];
        for (it, part) in items.iter().zip(partials.chunks_exact(k)) {
            for (s, p) in sums[it.tensor].iter_mut().zip(part) {
                *s += p;
            }
        }
        scalars = sums.iter().map(|s| rule.tensor_scalar(s)).collect();
        ctx.scalars = &scalars;
    }
    let ctx = &ctx;
    let items = if parallel {
        update_items(tensors, total, rows_only)
    } else {
        work_items_of(tensors, CHUNK, |i| Some(rows_only.of(i)))
    };
    run_items(level, ctx, &items, parallel);

    // The EMA of a tensor updated on its rows only still covers all of it.
    if pro.ema.is_some() {
        let ema_items = work_items_of(tensors, CHUNK, |i| {
            (rows_only.of(i) && tensors[i].average.is_some()).then_some(false)
        });
        if !ema_items.is_empty() {
            let ema_ctx = Ctx {
                mode: Mode::EmaOnly,
                clip: ClipStage::None,
                rows_only: RowsOnly(&[]),
                ..*ctx
            };
            let ema_total = ema_items.iter().map(|it| it.end - it.start).sum();
            run_items(level, &ema_ctx, &ema_items, worth_parallel(ema_total));
        }
    }
    ended(total);
}

fn run_items<T: Real, R: Rule<T>>(
    level: Level,
    ctx: &Ctx<'_, T, R>,
    items: &[Item],
    parallel: bool,
) {
    if parallel {
        pool::run_parts(items.len(), |i| process_at(level, ctx, &items[i]));
    } else {
        for it in items {
            process_at(level, ctx, it);
        }
    }
}

/// Whether a call of `total` elements is worth the pool. The pool's worker parks ~20 us after
/// its last job, and waking a parked thread costs the caller ~10 us and the worker ~30-60 us
/// more before it starts (on this kind of virtual machine). So a call that follows another
/// large call within `WARM_NS` (a tight loop of steps: the worker is still awake) uses the pool
/// from `INLINE_BELOW` elements, and a call after a pause (a forward and backward pass in
/// between) only from `COLD_PARALLEL_FROM`, where half the work outweighs the wake-up.
#[must_use]
pub fn worth_parallel(total: usize) -> bool {
    if total < INLINE_BELOW || pool::num_threads() < 2 {
        return false;
    }
    total >= COLD_PARALLEL_FROM || pool::recently_active(WARM_NS)
}

/// Records the end of a call of `total` elements for `worth_parallel`.
pub fn ended(total: usize) {
    if total >= INLINE_BELOW {
        pool::mark_active();
    }
}

/// The sum of squares of each tensor's final gradient (unscaled and averaged with its
/// accumulator as an update step would, nothing written), in the fixed order of the norm
/// clipping pass: the same value for any thread count.
///
/// A row-sparse gradient that is zero outside its rows is summed over the blocks its rows
/// meet only, in the same blocks and items as the dense gradient: the blocks left out add
/// exactly zero, so the sum is the dense gradient's, bit for bit.
fn gradient_sums<T: Real>(
    level: Level,
    tensors: &[Tensor<T>],
    pro: &Prologue<T>,
    parallel: bool,
) -> Vec<f64> {
    let items = work_items_of(tensors, CHUNK, |i| {
        (!tensors[i].zero_outside_rows(pro)).then_some(false)
    });
    let partials = map_items(&items, parallel, 1, |it, out| {
        out[0] = reduce_at(level, tensors, pro, it);
    });
    let mut sums = vec![0.0f64; tensors.len()];
    for (it, s) in items.iter().zip(&partials) {
        sums[it.tensor] += s;
    }
    for (t, sum) in tensors.iter().zip(sums.iter_mut()) {
        if let (true, Some(rows)) = (t.zero_outside_rows(pro), t.rows()) {
            *sum = rows_sum_squares(level, t, rows, pro);
        }
    }
    sums
}

fn rows_sum_squares<T: Real>(
    level: Level,
    t: &Tensor<T>,
    rows: &Rows<T>,
    pro: &Prologue<T>,
) -> f64 {
    let mut total = 0.0;
    let mut item_sum = 0.0;
    let mut item = None;
    for b in rows.blocks_met(BLOCK) {
        if item != Some(b / CHUNK) {
            total += item_sum;
            item_sum = 0.0;
            item = Some(b / CHUNK);
        }
        let n = BLOCK.min(t.len - b);
        item_sum += reduce_block_at(level, t, pro, b, n);
    }
    total + item_sum
}

/// The sum of squares of the final gradients of a whole call, as `global_clipnorm` sees it:
/// for a global norm over several calls (a model of float32 and float64 variables). Reads
/// only; the prologue's clipping, weight decay and EMA play no part.
#[must_use]
pub fn gradient_sum_squares<T: Real>(tensors: &[Tensor<T>], pro: &Prologue<T>) -> f64 {
    let total: usize = tensors.iter().map(|t| t.len).sum();
    let sum = gradient_sums(simd::current(), tensors, pro, worth_parallel(total))
        .iter()
        .sum();
    ended(total);
    sum
}

/// Runs `f(item, out)` for every item (on the pool when `parallel`), where `out` is that
/// item's `k` slots of the returned vector (item order, whatever ran where).
fn map_items<F>(items: &[Item], parallel: bool, k: usize, f: F) -> Vec<f64>
where
    F: Fn(&Item, &mut [f64]) + Sync,
{
    let out: Vec<AtomicU64> = (0..items.len() * k).map(|_| AtomicU64::new(0)).collect();
    let out_ref = &out;
    let one = |i: usize| {
        let mut buf = [0.0f64; MAX_SUMS];
        let buf = &mut buf[..k];
        f(&items[i], buf);
        for (j, v) in buf.iter().enumerate() {
            out_ref[i * k + j].store(v.to_bits(), Ordering::Relaxed);
        }
    };
    if parallel {
        pool::run_parts(items.len(), one);
    } else {
        (0..items.len()).for_each(one);
    }
    // `run_parts` returned: every part has finished and its stores are visible.
    out.into_iter()
        .map(|a| f64::from_bits(a.into_inner()))
        .collect()
}

simd::dispatch! {
    /// `process` compiled for `level`.
    fn process_at<T: Real, R: Rule<T>>(level, ctx: &Ctx<'_, T, R>, it: &Item) => process
}

simd::dispatch! {
    /// `rule_reduce_item` compiled for `level`.
    fn rule_reduce_at<T: Real, R: Rule<T>>(level, ctx: &Ctx<'_, T, R>, it: &Item) -> Vec<f64>
        => rule_reduce_item
}

simd::dispatch! {
    /// `reduce_item` compiled for `level`.
    fn reduce_at<T: Real>(level, tensors: &[Tensor<T>], pro: &Prologue<T>, it: &Item) -> f64
        => reduce_item
}

simd::dispatch! {
    /// `reduce_block` compiled for `level`.
    fn reduce_block_at<T: Real>(level, t: &Tensor<T>, pro: &Prologue<T>, b: usize, n: usize)
        -> f64 => reduce_block
}

/// The rule's sums over one work item: the same gradient, clipping and decay stages as the
/// update pass, on copies, so nothing is written.
#[inline(always)]
fn rule_reduce_item<T: Real, R: Rule<T>>(ctx: &Ctx<'_, T, R>, it: &Item) -> Vec<f64> {
    let t = &ctx.tensors[it.tensor];
    let pro = ctx.pro;
    let mut sums = vec![0.0f64; ctx.rule.sums()];
    let mut gbuf = [T::ZERO; BLOCK];
    let mut abuf = [T::ZERO; BLOCK];
    let mut pbuf = [T::ZERO; BLOCK];
    let mut sbuf = [[T::ZERO; BLOCK]; MAX_SLOTS];
    let clip_active = !matches!(ctx.clip, ClipStage::None);
    let untouched = pro.gradient_untouched(clip_active);
    let decay = if t.decay { pro.weight_decay } else { None };
    let nslots = t.slots.len().min(MAX_SLOTS);
    let mut b = it.start;
    while b < it.end {
        let n = BLOCK.min(it.end - b);
        // In place only if nothing transforms it; otherwise into `gbuf` (never resetting the
        // accumulator here: the update pass does that).
        let g = load_gradient(t, pro, b, n, untouched, false, None, &mut gbuf, &mut abuf);
        apply_clip(ctx, it.tensor, g);
        let p: &[T] = if decay.is_some() || !t.param.is_direct() {
            let copy = &mut pbuf[..n];
            if t.param.is_direct() {
                // SAFETY: in range; read only.
                copy.copy_from_slice(unsafe { t.param.slice_mut(b, n) });
            } else {
                // SAFETY: the strides and shape come from the parameter's own array.
                unsafe { t.param.gather(&t.shape, b, copy) };
            }
            if let Some((wd, lr)) = decay {
                prologue::weight_decay(copy, wd, lr);
            }
            copy
        } else {
            // SAFETY: in range; read only.
            unsafe { t.param.slice_mut(b, n) }
        };
        let mut sl: [&[T]; MAX_SLOTS] = [&[]; MAX_SLOTS];
        for ((slot, op), buf) in sl.iter_mut().zip(&t.slots).zip(sbuf.iter_mut()) {
            *slot = load(op, &t.shape, b, n, buf);
        }
        ctx.rule.reduce(p, g, &sl[..nslots], &mut sums);
        b += n;
    }
    sums
}

fn apply_clip<T: Real, R>(ctx: &Ctx<'_, T, R>, tensor: usize, g: &mut [T]) {
    match ctx.clip {
        ClipStage::None => {}
        ClipStage::PerTensor(c, dens) => prologue::clip_by_norm(g, c, dens[tensor]),
        ClipStage::Scale(s) => prologue::scale(g, s),
        ClipStage::Value(c) => prologue::clip_value(g, c),
    }
}

/// Loads the gradient of `t` at `b..b + n` into `gbuf` after unscaling and averaging with
/// the accumulator (reset to zero when `reset_accumulator`), or borrows it in place when
/// nothing transforms it. `row`: the block's gradient when the call runs over a row-sparse
/// gradient's rows (their summed values), in place of the tensor's own.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn load_gradient<'a, T: Real>(
    t: &'a Tensor<T>,
    pro: &Prologue<T>,
    b: usize,
    n: usize,
    in_place: bool,
    reset_accumulator: bool,
    row: Option<&[T]>,
    gbuf: &'a mut [T; BLOCK],
    abuf: &mut [T; BLOCK],
) -> &'a mut [T] {
    let Some(grad) = t.grad.as_ref() else {
        return &mut gbuf[..0];
    };
    if let (true, None, Some(direct)) = (in_place, row, grad.direct()) {
        // SAFETY: in range, alive; the gradient is read only, and the bindings guarantee no
        // writable operand shares its memory.
        return unsafe { direct.slice_mut(b, n) };
    }
    let g = &mut gbuf[..n];
    match (row, grad) {
        (Some(values), _) => g.copy_from_slice(values),
        (None, Grad::Rows(rows)) => rows.fill(b, g),
        (None, Grad::Same(op)) if op.is_direct() => {
            // SAFETY: as above.
            g.copy_from_slice(unsafe { op.slice_mut(b, n) });
        }
        (None, Grad::Same(op)) => {
            // SAFETY: the strides and shape come from the gradient array itself.
            unsafe { op.gather(&t.shape, b, g) };
        }
        (None, Grad::Cast(op)) if op.is_direct() => {
            // SAFETY: as above.
            let src = unsafe { op.slice_mut(b, n) };
            for (d, &s) in g.iter_mut().zip(src.iter()) {
                *d = T::from_other(s);
            }
        }
        (None, Grad::Cast(op)) => {
            let mut other = [<T::Other as Real>::ZERO; BLOCK];
            let other = &mut other[..n];
            // SAFETY: as above.
            unsafe { op.gather(&t.shape, b, other) };
            for (d, &s) in g.iter_mut().zip(other.iter()) {
                *d = T::from_other(s);
            }
        }
    }
    if let Some(ls) = pro.loss_scale {
        prologue::unscale(g, ls);
    }
    if let (Some(k), Some(acc)) = (pro.accumulation_steps, t.accumulator.as_ref()) {
        if acc.is_direct() {
            // SAFETY: in range; this item alone touches these accumulator elements.
            let a = unsafe { acc.slice_mut(b, n) };
            prologue::average_accumulated(g, a, k);
            if reset_accumulator {
                a.fill(T::ZERO);
            }
        } else {
            let a = &mut abuf[..n];
            // SAFETY: as above, through the accumulator's own strides.
            unsafe { acc.gather(&t.shape, b, a) };
            prologue::average_accumulated(g, a, k);
            if reset_accumulator {
                a.fill(T::ZERO);
                // SAFETY: as above.
                unsafe { acc.scatter(&t.shape, b, a) };
            }
        }
    }
    g
}

#[inline(always)]
fn reduce_item<T: Real>(tensors: &[Tensor<T>], pro: &Prologue<T>, it: &Item) -> f64 {
    let t = &tensors[it.tensor];
    let mut sum = 0.0;
    let mut b = it.start;
    while b < it.end {
        let n = BLOCK.min(it.end - b);
        sum += reduce_block(t, pro, b, n);
        b += n;
    }
    sum
}

/// The sum of squares of the final gradient of `t` at `b..b + n` (at most one block).
#[inline(always)]
fn reduce_block<T: Real>(t: &Tensor<T>, pro: &Prologue<T>, b: usize, n: usize) -> f64 {
    let mut gbuf = [T::ZERO; BLOCK];
    let mut abuf = [T::ZERO; BLOCK];
    let untouched = pro.gradient_untouched(false);
    let g = load_gradient(t, pro, b, n, untouched, false, None, &mut gbuf, &mut abuf);
    sum_squares(g)
}

/// One work item of the update pass: a range of elements, or for a tensor updated on its
/// gradient's rows only, a range of its distinct rows, each row a range of elements whose
/// gradient is the row's summed values.
#[inline(always)]
fn process<T: Real, R: Rule<T>>(ctx: &Ctx<'_, T, R>, it: &Item) {
    let t = &ctx.tensors[it.tensor];
    match t.rows() {
        Some(rows) if ctx.rows_only.of(it.tensor) => {
            let l = rows.row_len();
            let indices = rows.rows();
            for k in it.start..it.end {
                if let Some(&ahead) = indices[..it.end].get(k + PREFETCH_ROWS) {
                    t.param.prefetch(ahead * l, l);
                    for slot in &t.slots {
                        slot.prefetch(ahead * l, l);
                    }
                }
                let start = indices[k] * l;
                process_range(ctx, it.tensor, start, start + l, Some(rows.row(k)));
            }
        }
        _ => process_range(ctx, it.tensor, it.start, it.end, None),
    }
}

/// The update pass over elements `start..end` of one tensor; `row`: their gradient, when the
/// call runs over a row-sparse gradient's rows.
#[inline(always)]
#[allow(clippy::too_many_lines)]
fn process_range<T: Real, R: Rule<T>>(
    ctx: &Ctx<'_, T, R>,
    tensor: usize,
    start: usize,
    end: usize,
    row: Option<&[T]>,
) {
    let t = &ctx.tensors[tensor];
    let pro = ctx.pro;
    let clip_active = !matches!(ctx.clip, ClipStage::None);
    let grad_untouched = pro.gradient_untouched(clip_active);
    let decay = if t.decay { pro.weight_decay } else { None };
    // Rows-only calls leave the EMA to a pass of its own over the whole tensor.
    let ema = pro.ema.filter(|_| t.average.is_some() && row.is_none());
    let nslots = t.slots.len().min(MAX_SLOTS);
    let direct_grad = match row {
        Some(values) => Some(values),
        // SAFETY: in range, alive, read only; no writable operand shares its memory.
        None => t
            .grad
            .as_ref()
            .and_then(Grad::direct)
            .map(|g| &*unsafe { g.slice_mut(start, end - start) }),
    };

    if ctx.mode == Mode::Update
        && grad_untouched
        && decay.is_none()
        && ema.is_none()
        && t.state_direct()
        && (direct_grad.is_some() || t.grad.is_none())
    {
        // The plain step: one pass of the rule over the whole range, in place.
        let n = end - start;
        // SAFETY: every operand is direct and holds `t.len` elements; this item alone touches
        // `start..end` of each.
        let p = unsafe { t.param.slice_mut(start, n) };
        let mut sl: [&mut [T]; MAX_SLOTS] = std::array::from_fn(|_| -> &mut [T] { &mut [] });
        for (k, op) in t.slots.iter().take(nslots).enumerate() {
            // SAFETY: as above.
            sl[k] = unsafe { op.slice_mut(start, n) };
        }
        ctx.rule.update_with(
            p,
            direct_grad.unwrap_or(&[]),
            &mut sl[..nslots],
            ctx.scalar(tensor),
        );
        return;
    }

    let mut gbuf = [T::ZERO; BLOCK];
    let mut abuf = [T::ZERO; BLOCK];
    let mut pbuf = [T::ZERO; BLOCK];
    let mut ebuf = [T::ZERO; BLOCK];
    let mut sbuf = [[T::ZERO; BLOCK]; MAX_SLOTS];
    let mut b = start;
    while b < end {
        let n = BLOCK.min(end - b);
        let row_block = row.map(|values| &values[b - start..b - start + n]);
        match ctx.mode {
            Mode::Update => {
                let g = load_gradient(
                    t,
                    pro,
                    b,
                    n,
                    grad_untouched,
                    true,
                    row_block,
                    &mut gbuf,
                    &mut abuf,
                );
                apply_clip(ctx, tensor, g);
                let p = load(&t.param, &t.shape, b, n, &mut pbuf);
                if let Some((wd, lr)) = decay {
                    prologue::weight_decay(p, wd, lr);
                }
                let mut sl: [&mut [T]; MAX_SLOTS] =
                    std::array::from_fn(|_| -> &mut [T] { &mut [] });
                for ((slot, op), buf) in sl.iter_mut().zip(&t.slots).zip(sbuf.iter_mut()) {
                    *slot = load(op, &t.shape, b, n, buf);
                }
                ctx.rule
                    .update_with(p, g, &mut sl[..nslots], ctx.scalar(tensor));
                for (slot, op) in sl.iter().zip(&t.slots) {
                    store(op, &t.shape, b, slot);
                }
                if let (Some((m, overwrite)), Some(avg_op)) = (ema, t.average.as_ref()) {
                    let avg = load(avg_op, &t.shape, b, n, &mut ebuf);
                    prologue::ema(p, avg, m, overwrite);
                    store(avg_op, &t.shape, b, avg);
                }
                store(&t.param, &t.shape, b, p);
            }
            Mode::AccumulateOnly | Mode::EmaOnly => {
                if ctx.mode == Mode::AccumulateOnly {
                    if let Some(acc_op) = t.accumulator.as_ref() {
                        // Unscaled, not averaged: the accumulator sums raw micro-gradients.
                        let plain = Prologue {
                            accumulation_steps: None,
                            ..*pro
                        };
                        let in_place = plain.gradient_untouched(false);
                        let g = load_gradient(
                            t, &plain, b, n, in_place, false, row_block, &mut gbuf, &mut abuf,
                        );
                        let acc = load(acc_op, &t.shape, b, n, &mut sbuf[0]);
                        prologue::accumulate(acc, g);
                        store(acc_op, &t.shape, b, acc);
                    }
                }
                if let (Some((m, overwrite)), Some(avg_op)) = (ema, t.average.as_ref()) {
                    let p = load(&t.param, &t.shape, b, n, &mut pbuf);
                    let avg = load(avg_op, &t.shape, b, n, &mut ebuf);
                    prologue::ema(p, avg, m, overwrite);
                    store(avg_op, &t.shape, b, avg);
                    if overwrite {
                        store(&t.param, &t.shape, b, p);
                    }
                }
            }
        }
        b += n;
    }
}

/// Borrows a direct operand's block in place, or gathers a strided one into `buf`.
#[inline(always)]
fn load<'a, T: Real>(
    op: &'a Operand<T>,
    shape: &[usize],
    b: usize,
    n: usize,
    buf: &'a mut [T; BLOCK],
) -> &'a mut [T] {
    if op.is_direct() {
        // SAFETY: in range, alive, and this work item alone touches these elements.
        unsafe { op.slice_mut(b, n) }
    } else {
        let s = &mut buf[..n];
        // SAFETY: the strides and shape come from the operand's own array.
        unsafe { op.gather(shape, b, s) };
        s
    }
}

/// Writes a gathered block back; nothing to do for a direct operand.
#[inline(always)]
fn store<T: Real>(op: &Operand<T>, shape: &[usize], b: usize, block: &[T]) {
    if !op.is_direct() {
        // SAFETY: as in `load`.
        unsafe { op.scatter(shape, b, block) };
    }
}
