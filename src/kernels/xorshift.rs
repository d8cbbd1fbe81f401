//! A small deterministic generator for the tests, so they need no crate: the unit tests reach
//! it as `kernels::xorshift`, the integration tests (`tests/driver.rs`) include this file by
//! path, so the library itself does not carry it.

/// xorshift64 (shifts 13, 7, 17). The seed must not be 0.
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn bits(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Uniform in [0, 1), from the top 53 bits.
    pub fn unit(&mut self) -> f64 {
        (self.bits() >> 11) as f64 / (1u64 << 53) as f64
    }
}
