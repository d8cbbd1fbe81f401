//! The thread pools the kernels run on.
//!
//! Dedicated rayon pools (never rayon's global one) so `set_num_threads` can resize them. The
//! driver's calling thread always takes a share of the work itself (`run_parts`), so its pool
//! has one worker fewer than the thread count: a step on two threads wakes one worker, and no
//! idle worker spins against the caller. Matrix products (`newton_schulz`) run entirely inside
//! a second, full pool, built only when first used. Two rules keep them safe:
//! - After `fork()` the child has none of the parent's worker threads; using the old pool
//!   would hang. A `pthread_atfork` child handler bumps a generation counter and the next call
//!   builds a fresh pool (the stale one is leaked, never dropped: its threads do not exist).
//! - The pool handle is cloned out under a short lock, so a pool being replaced is dropped
//!   only when the last in-flight step using it ends.

use parking_lot::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Once, OnceLock};

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

/// `FERROPTIM_NUM_THREADS`, else the CPUs this process may use; read once (asking the OS
/// reads cgroup files, far too slow for every step).
fn default_threads() -> usize {
    static DEFAULT: OnceLock<usize> = OnceLock::new();
    *DEFAULT.get_or_init(|| {
        std::env::var("FERROPTIM_NUM_THREADS")
            .ok()
            .and_then(|s| s.trim().parse::<usize>().ok())
            .filter(|&n| n >= 1)
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

/// Runs `f(0)`, ..., `f(parts - 1)` and returns when all are done: part 0 on the calling
/// thread, the others on the pool (or all inline when there is no pool).
pub fn run_parts<F: Fn(usize) + Sync>(parts: usize, f: F) {
    if parts > 1 {
        if let Some(p) = pool(Kind::Helpers) {
            p.in_place_scope(|s| {
                let f = &f;
                for i in 1..parts {
                    s.spawn(move |_| f(i));
                }
                f(0);
            });
            return;
        }
    }
    for i in 0..parts {
        f(i);
    }
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
