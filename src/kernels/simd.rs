//! Which instruction set the kernels run with, chosen once at run time.
//!
//! Every rule is written once as scalar code over slices; the driver compiles its inner loop
//! once per level below (`#[target_feature]`) and calls the one this module selects. Because
//! the rules use only IEEE add, sub, mul, div, sqrt and compares (no fused multiply-add: Rust
//! never contracts `a * b + c`), every level produces bitwise identical results.

use std::sync::atomic::{AtomicU8, Ordering};

/// Defines `name(level, args...)`, which runs the `#[inline(always)]` function `inner(args...)`
/// compiled for `level`: one `#[target_feature]` copy per level, into which `inner` (and
/// everything it inlines: the rule's loops) is inlined, so the compiler vectorizes the same
/// scalar code for each instruction set.
///
/// ```text
/// dispatch! {
///     /// docs
///     fn name<T: Real, R: Rule<T>>(level, x: &X<'_, T, R>, it: &Item) -> Out => inner
/// }
/// ```
///
/// `unsafe fn` defines an unsafe `name` over an unsafe `inner`, with `inner`'s contract.
/// `level` must come from `current()` (or `detected()`), which only selects a level the CPU
/// supports.
macro_rules! dispatch {
    (
        $(#[$meta:meta])*
        $vis:vis fn $name:ident<$($gen:ident: $bound:path),*>($level:ident $(, $arg:ident: $ty:ty)*)
            $(-> $ret:ty)? => $inner:ident
    ) => {
        $(#[$meta])*
        $vis fn $name<$($gen: $bound),*>($level: $crate::kernels::simd::Level $(, $arg: $ty)*)
            $(-> $ret)?
        {
            $crate::kernels::simd::dispatch!(@levels $level; $($gen: $bound),*; $($arg: $ty),*;
                $(-> $ret)?; $inner; $inner::<$($gen),*>($($arg),*))
        }
    };
    (
        $(#[$meta:meta])*
        $vis:vis unsafe fn $name:ident<$($gen:ident: $bound:path),*>($level:ident $(, $arg:ident: $ty:ty)*)
            $(-> $ret:ty)? => $inner:ident
    ) => {
        $(#[$meta])*
        $vis unsafe fn $name<$($gen: $bound),*>($level: $crate::kernels::simd::Level $(, $arg: $ty)*)
            $(-> $ret)?
        {
            // SAFETY (baseline call): `inner`'s contract is the caller's.
            $crate::kernels::simd::dispatch!(@levels $level; $($gen: $bound),*; $($arg: $ty),*;
                $(-> $ret)?; $inner; unsafe { $inner::<$($gen),*>($($arg),*) })
        }
    };
    (@levels $level:ident; $($gen:ident: $bound:path),*; $($arg:ident: $ty:ty),*;
        $(-> $ret:ty)?; $inner:ident; $baseline:expr) => {{
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2,fma")]
        unsafe fn avx2<$($gen: $bound),*>($($arg: $ty),*) $(-> $ret)? {
            // SAFETY: forwarded from the caller (for an unsafe `inner`).
            #[allow(unused_unsafe)]
            unsafe { $inner::<$($gen),*>($($arg),*) }
        }

        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx512f,avx512dq,avx512vl,avx2,fma")]
        unsafe fn avx512<$($gen: $bound),*>($($arg: $ty),*) $(-> $ret)? {
            // SAFETY: forwarded from the caller (for an unsafe `inner`).
            #[allow(unused_unsafe)]
            unsafe { $inner::<$($gen),*>($($arg),*) }
        }

        match $level {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: the level comes from `simd::current`, which only selects a level the CPU
            // was detected to support; an unsafe `inner`'s contract is the caller's.
            $crate::kernels::simd::Level::Avx512 => unsafe { avx512::<$($gen),*>($($arg),*) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as above.
            $crate::kernels::simd::Level::Avx2 => unsafe { avx2::<$($gen),*>($($arg),*) },
            _ => $baseline,
        }
    }};
}
pub(crate) use dispatch;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Baseline = 1,
    Avx2 = 2,
    Avx512 = 3,
}

impl Level {
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Level::Baseline => "baseline",
            Level::Avx2 => "avx2",
            Level::Avx512 => "avx512",
        }
    }

    #[must_use]
    pub fn parse(name: &str) -> Option<Option<Level>> {
        match name {
            "auto" => Some(None),
            "baseline" => Some(Some(Level::Baseline)),
            "avx2" => Some(Some(Level::Avx2)),
            "avx512" => Some(Some(Level::Avx512)),
            _ => None,
        }
    }

    fn from_u8(x: u8) -> Level {
        match x {
            3 => Level::Avx512,
            2 => Level::Avx2,
            _ => Level::Baseline,
        }
    }
}

/// The best level this CPU supports.
#[must_use]
pub fn detected() -> Level {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512dq")
            && std::arch::is_x86_feature_detected!("avx512vl")
        {
            return Level::Avx512;
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            return Level::Avx2;
        }
    }
    Level::Baseline
}

/// 0 = not chosen yet; otherwise a `Level` discriminant.
static CURRENT: AtomicU8 = AtomicU8::new(0);

/// The level in use: the override if one was set, else `FERROPTIM_SIMD` if it names a
/// supported level, else the best detected one.
#[inline]
#[must_use]
pub fn current() -> Level {
    match CURRENT.load(Ordering::Relaxed) {
        0 => {
            let best = detected();
            let chosen = std::env::var("FERROPTIM_SIMD")
                .ok()
                .and_then(|s| Level::parse(s.trim()))
                .flatten()
                .filter(|l| *l as u8 <= best as u8)
                .unwrap_or(best);
            CURRENT.store(chosen as u8, Ordering::Relaxed);
            chosen
        }
        x => Level::from_u8(x),
    }
}

/// Forces a level (`None`: back to automatic). Returns `Err(best)` if the CPU lacks it.
///
/// # Errors
/// The requested level is above what the CPU supports.
pub fn set(level: Option<Level>) -> Result<(), Level> {
    let best = detected();
    let level = level.unwrap_or(best);
    if level as u8 > best as u8 {
        return Err(best);
    }
    CURRENT.store(level as u8, Ordering::Relaxed);
    Ok(())
}
