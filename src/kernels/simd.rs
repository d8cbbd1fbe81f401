//! Which instruction set the kernels run with, chosen once at run time.
//!
//! Every rule is written once as scalar code over slices; the driver compiles its inner loop
//! once per level below (`#[target_feature]`) and calls the one this module selects. Because
//! the rules use only IEEE add, sub, mul, div, sqrt and compares (no fused multiply-add: Rust
//! never contracts `a * b + c`), every level produces bitwise identical results.

use std::sync::atomic::{AtomicU8, Ordering};

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
