//! The thread pools the kernels run on.
//!
//! Dedicated rayon pools (never rayon's global one) so `set_num_threads` can resize them. The
//! driver's calling thread works too (`run_parts`: caller and workers claim parts from a
//! shared counter), so its pool has one worker fewer than the thread count: a step on two
//! threads wakes one worker, and no idle worker spins against the caller. Matrix products
//! (`newton_schulz`) run entirely inside a second, full pool, built only when first used. Two
//! rules keep them safe:
//! - After `fork()` the child has none of the parent's worker threads; using the old pool
//!   would hang. A `pthread_atfork` child handler bumps a generation counter and the next call
//!   builds a fresh pool (the stale one is leaked, never dropped: its threads do not exist).
//! - The pool handle is cloned out under a short lock, so a pool being replaced is dropped
//!   only when the last in-flight step using it ends.

use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Once, OnceLock};
use std::time::Instant;

struct Entry {
    threads: usize,
    generation: usize,
    pool: Arc<rayon::ThreadPool>,
}

/// Which pool: the helpers of `run_parts` (one worker fewer than the thread count, the caller
/// being the other) or a full one for work that runs entirely inside a pool (matrix products).
#[derive(Clone, Copy)]
pub enum Kind {
    Helpers = 0,
    Full = 1,
}

static POOL: Mutex<[Option<Entry>; 2]> = Mutex::new([None, None]);
/// 0 = not set: use `FERROPTIM_NUM_THREADS`, else the number of CPUs.
static REQUESTED: AtomicUsize = AtomicUsize::new(0);
static GENERATION: AtomicUsize = AtomicUsize::new(0);
static AT_FORK: Once = Once::new();

/// The most threads a pool may have, whether set by `set_num_threads` or
/// `FERROPTIM_NUM_THREADS` (each a thread stack and a wake-up on every large step).
pub const MAX_THREADS: usize = 1024;

/// `FERROPTIM_NUM_THREADS` when it is an integer from 1 to `MAX_THREADS`, else the CPUs this
/// process may use (the Python package warns about any other value at import); read once
/// (asking the OS reads cgroup files, far too slow for every step).
fn default_threads() -> usize {
    static DEFAULT: OnceLock<usize> = OnceLock::new();
    *DEFAULT.get_or_init(|| {
        std::env::var("FERROPTIM_NUM_THREADS")
            .ok()
            .and_then(|s| s.trim().parse::<usize>().ok())
            .filter(|n| (1..=MAX_THREADS).contains(n))
            .unwrap_or_else(|| {
                std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
            })
    })
}

/// The number of threads steps run on.
#[must_use]
pub fn num_threads() -> usize {
    match REQUESTED.load(Ordering::Relaxed) {
        0 => default_threads(),
        n => n,
    }
}

/// Sets the number of threads (`n >= 1`; the bindings validate it).
pub fn set_num_threads(n: usize) {
    REQUESTED.store(n.max(1), Ordering::Relaxed);
}

#[cfg(unix)]
extern "C" fn prepare_fork() {
    // Hold the lock across fork() so the child never inherits it mid-update.
    std::mem::forget(POOL.lock());
}

#[cfg(unix)]
extern "C" fn parent_after_fork() {
    // SAFETY: `prepare_fork` locked the mutex on this same thread and forgot the guard.
    unsafe { POOL.force_unlock() };
}

#[cfg(unix)]
extern "C" fn child_after_fork() {
    GENERATION.fetch_add(1, Ordering::Relaxed);
    // SAFETY: `prepare_fork` locked the mutex in the forking thread, which is the only thread
    // of the child; nobody else can hold it.
    unsafe { POOL.force_unlock() };
}

fn register_at_fork() {
    AT_FORK.call_once(|| {
        #[cfg(unix)]
        // SAFETY: the three handlers are `extern "C"` functions with static lifetime that only
        // touch process-global atomics and the pool mutex.
        unsafe {
            libc::pthread_atfork(
                Some(prepare_fork),
                Some(parent_after_fork),
                Some(child_after_fork),
            );
        }
    });
}

/// When the last large call ended, in nanoseconds since the first call that asked.
static LAST_ACTIVE: AtomicU64 = AtomicU64::new(0);

fn now_ns() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let ns = EPOCH.get_or_init(Instant::now).elapsed().as_nanos();
    // 0 means "never"; 2^64 ns is 584 years.
    u64::try_from(ns).unwrap_or(u64::MAX).max(1)
}

/// Records that a large call ended now.
pub fn mark_active() {
    LAST_ACTIVE.store(now_ns(), Ordering::Relaxed);
}

/// Whether a large call ended less than `within_ns` ago.
#[must_use]
pub fn recently_active(within_ns: u64) -> bool {
    let last = LAST_ACTIVE.load(Ordering::Relaxed);
    last != 0 && now_ns().saturating_sub(last) < within_ns
}

/// Runs `f(0)`, ..., `f(parts - 1)` and returns when all are done. The parts are claimed one
/// at a time from a shared counter by the calling thread and by the pool's workers, so the
/// caller starts at once and never waits for a worker that is still waking up: it takes the
/// parts nobody has claimed, then waits only for the parts a worker is running. (Waking a
/// parked thread takes 30-100 us on a virtual machine, longer than a mid-sized step; a static
/// split made the caller wait that long for the worker's half.) A panic inside `f` on a
/// worker aborts the process (rayon's default for spawned jobs); the kernels do not panic.
pub fn run_parts<F: Fn(usize) + Sync>(parts: usize, f: F) {
    if parts > 1 {
        if let Some(p) = pool(Kind::Helpers) {
            run_shared(&p, parts, &f);
            return;
        }
    }
    for i in 0..parts {
        f(i);
    }
}

/// The state a call shares with the workers it asked for help. Workers may start after the
/// call has returned, so it is reference-counted and the job behind a gate.
struct Shared {
    parts: usize,
    next: AtomicUsize,
    done: AtomicUsize,
    /// Workers past the gate (they may be running the job).
    active: AtomicUsize,
    /// Set by the caller once every part is done: later workers leave without touching `job`.
    closed: AtomicBool,
    job: Job,
}

/// The caller's closure with its lifetime erased.
struct Job(*const (dyn Fn(usize) + Sync + 'static));

// SAFETY: the closure is `Sync` and only called through `&`; `run_shared` keeps it alive for
// as long as any worker can call it (see the gate protocol there).
unsafe impl Send for Job {}
// SAFETY: as above.
unsafe impl Sync for Job {}

impl Shared {
    /// Claims and runs parts until none is left.
    fn work(&self, f: &(dyn Fn(usize) + Sync)) {
        loop {
            let i = self.next.fetch_add(1, Ordering::Relaxed);
            if i >= self.parts {
                return;
            }
            f(i);
            self.done.fetch_add(1, Ordering::Release);
        }
    }
}

/// On every exit from `run_shared` (a panic included): close the gate and wait until no
/// worker is past it, so no worker can call the job once the caller's frame is gone.
struct CloseGate<'a>(&'a Shared);

impl Drop for CloseGate<'_> {
    fn drop(&mut self) {
        self.0.closed.store(true, Ordering::SeqCst);
        let mut spins = 0u32;
        while self.0.active.load(Ordering::SeqCst) != 0 {
            backoff(&mut spins);
        }
    }
}

fn backoff(spins: &mut u32) {
    if *spins < 64 {
        *spins += 1;
        std::hint::spin_loop();
    } else {
        std::thread::yield_now();
    }
}

fn run_shared(pool: &rayon::ThreadPool, parts: usize, f: &(dyn Fn(usize) + Sync)) {
    // SAFETY: only the lifetime is erased. Workers call the job only while they are counted in
    // `active` and saw `closed == false`; `CloseGate` sets `closed` and then waits for `active`
    // to drop to 0 before this function returns or unwinds, so `f` outlives every call.
    #[allow(clippy::transmute_ptr_to_ptr)] // a lifetime change: no cast can express it
    let job = Job(unsafe {
        std::mem::transmute::<*const (dyn Fn(usize) + Sync + '_), *const (dyn Fn(usize) + Sync)>(f)
    });
    let shared = Arc::new(Shared {
        parts,
        next: AtomicUsize::new(0),
        done: AtomicUsize::new(0),
        active: AtomicUsize::new(0),
        closed: AtomicBool::new(false),
        job,
    });
    let helpers = (parts - 1).min(pool.current_num_threads());
    for _ in 0..helpers {
        let shared = Arc::clone(&shared);
        pool.spawn(move || {
            // SeqCst on both sides (here: count, then look; the caller: close, then count)
            // means either the caller sees this worker in `active` and waits for it, or this
            // worker sees the gate closed.
            shared.active.fetch_add(1, Ordering::SeqCst);
            if !shared.closed.load(Ordering::SeqCst) {
                // SAFETY: past the gate; see `run_shared`.
                let f = unsafe { &*shared.job.0 };
                shared.work(f);
            }
            shared.active.fetch_sub(1, Ordering::SeqCst);
        });
    }
    let gate = CloseGate(&shared);
    shared.work(f);
    // Every part is claimed; wait for the ones workers are still running (at most one each).
    let mut spins = 0u32;
    while shared.done.load(Ordering::Acquire) < parts {
        backoff(&mut spins);
    }
    drop(gate);
}

/// The pool of this kind for the current thread count, built on first use and after a fork.
/// `None` when one thread is requested or the pool cannot be built: run inline then.
#[must_use]
pub fn pool(kind: Kind) -> Option<Arc<rayon::ThreadPool>> {
    let threads = num_threads();
    if threads <= 1 {
        return None;
    }
    register_at_fork();
    let generation = GENERATION.load(Ordering::Relaxed);
    let mut slots = POOL.lock();
    let slot = &mut slots[kind as usize];
    if let Some(e) = slot.as_ref() {
        if e.threads == threads && e.generation == generation {
            return Some(Arc::clone(&e.pool));
        }
    }
    if let Some(stale) = slot.take() {
        if stale.generation != generation {
            // Forked: the worker threads of this pool do not exist in this process.
            std::mem::forget(stale);
        }
    }
    let workers = match kind {
        Kind::Helpers => threads - 1,
        Kind::Full => threads,
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(workers)
        .thread_name(|i| format!("ferroptim-{i}"))
        .build()
        .ok()
        .map(Arc::new)?;
    *slot = Some(Entry {
        threads,
        generation,
        pool: Arc::clone(&pool),
    });
    Some(pool)
}
