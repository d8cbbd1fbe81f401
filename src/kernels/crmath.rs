//! Correctly rounded `pow`, `ln` and `cos` for the numbers a step derives from its
//! hyperparameters: bias corrections (`beta_1^t`), Nadam's momentum cache (`0.96^(t * decay)`),
//! Ftrl's `accumulator^(-learning_rate_power)`, the schedules' powers, logs and cosines.
//!
//! Why not `f32::powf` and friends: they are the C library's, and their last bit depends on it.
//! glibc picks an FMA or a plain variant by CPU, an old glibc (the one a manylinux wheel is
//! linked against) binds an older `powf` than a new one, and NumPy's float32 ufuncs take
//! different SIMD approximations on AVX2 and AVX-512 CPUs. A step must give the same bits on
//! every machine, so these functions use only IEEE `+ - * /` (correctly rounded everywhere;
//! Rust never contracts them into fused multiply-adds) and return the correctly rounded result,
//! which is one well-defined number that an independent reference can check:
//!
//! 1. A fast path in `f64` (f32 results only) with a known bound on its relative error. Ziv's
//!    test: if every value within that bound rounds to the same `f32`, that is the answer.
//! 2. Otherwise, and always for `f64` results, the same series in double-double arithmetic
//!    (about 104 bits), rounded once, again with Ziv's test.
//! 3. An integer power whose exact value fits 128 bits is rounded exactly (exact midpoints
//!    such as `(1 + 2^-12)^2` in f32 exist and need ties-to-even).
//!
//! What remains is a double-double value within ~2^-90 of a rounding boundary that no integer
//! shortcut covers (an exact midpoint of a non-integer power, or a cosine argument beyond 2^19
//! where the reduction loses bits): the double-double value is rounded as it is. That is still
//! the same bits on every machine, because every step is an IEEE operation.

/// A double-double number `hi + lo`, `|lo| <= ulp(hi) / 2`.
#[derive(Clone, Copy, Debug)]
struct Dd {
    hi: f64,
    lo: f64,
}

/// `a + b` as `s + e` exactly (Knuth).
#[inline]
fn two_sum(a: f64, b: f64) -> Dd {
    let s = a + b;
    let bb = s - a;
    Dd {
        hi: s,
        lo: (a - (s - bb)) + (b - bb),
    }
}

/// `a + b` exactly when `|a| >= |b|` (Dekker).
#[inline]
fn quick_two_sum(a: f64, b: f64) -> Dd {
    let s = a + b;
    Dd {
        hi: s,
        lo: b - (s - a),
    }
}

/// `a` as two halves of 26 bits (Dekker's split; `|a| < 2^996`).
#[inline]
fn split(a: f64) -> (f64, f64) {
    let c = 134_217_729.0 * a;
    let hi = c - (c - a);
    (hi, a - hi)
}

/// `a * b` as `p + e` exactly, without a fused multiply-add (whose availability varies).
#[inline]
fn two_prod(a: f64, b: f64) -> Dd {
    let p = a * b;
    let (ah, al) = split(a);
    let (bh, bl) = split(b);
    Dd {
        hi: p,
        lo: ((ah * bh - p) + ah * bl + al * bh) + al * bl,
    }
}

impl Dd {
    const fn new(hi: f64, lo: f64) -> Dd {
        Dd { hi, lo }
    }

    const fn from(x: f64) -> Dd {
        Dd { hi: x, lo: 0.0 }
    }

    fn neg(self) -> Dd {
        Dd::new(-self.hi, -self.lo)
    }

    /// The accurate sum (relative error ~2^-104 even under cancellation).
    fn add(self, b: Dd) -> Dd {
        let s = two_sum(self.hi, b.hi);
        let t = two_sum(self.lo, b.lo);
        let s = quick_two_sum(s.hi, s.lo + t.hi);
        quick_two_sum(s.hi, s.lo + t.lo)
    }

    fn sub(self, b: Dd) -> Dd {
        self.add(b.neg())
    }

    fn mul(self, b: Dd) -> Dd {
        let p = two_prod(self.hi, b.hi);
        quick_two_sum(p.hi, p.lo + (self.hi * b.lo + self.lo * b.hi))
    }

    fn mul_f(self, b: f64) -> Dd {
        let p = two_prod(self.hi, b);
        quick_two_sum(p.hi, p.lo + self.lo * b)
    }

    fn div(self, b: Dd) -> Dd {
        let q1 = self.hi / b.hi;
        let r = self.sub(b.mul_f(q1));
        let q2 = r.hi / b.hi;
        let r = r.sub(b.mul_f(q2));
        let q3 = r.hi / b.hi;
        quick_two_sum(q1, q2).add(Dd::from(q3))
    }
}

/// `1 / n!` for n = 0..=29, as double-doubles.
const INV_FACT: [Dd; 30] = [
    Dd::new(1.0, 0.0),
    Dd::new(1.0, 0.0),
    Dd::new(0.5, 0.0),
    Dd::new(0.166_666_666_666_666_66, 9.251_858_538_542_97e-18),
    Dd::new(0.041_666_666_666_666_664, 2.312_964_634_635_742_7e-18),
    Dd::new(0.008_333_333_333_333_333, 1.156_482_317_317_871_4e-19),
    Dd::new(0.001_388_888_888_888_889, -5.300_543_954_373_577e-20),
    Dd::new(0.000_198_412_698_412_698_4, 1.720_955_829_342_070_5e-22),
    Dd::new(2.480_158_730_158_73e-5, 2.151_194_786_677_588_2e-23),
    Dd::new(2.755_731_922_398_589_3e-6, -1.858_393_274_046_472e-22),
    Dd::new(2.755_731_922_398_589e-7, 2.376_771_462_225_029_7e-23),
    Dd::new(2.505_210_838_544_172e-8, -1.448_814_070_935_912e-24),
    Dd::new(2.087_675_698_786_81e-9, -1.207_345_059_113_26e-25),
    Dd::new(1.605_904_383_682_161_3e-10, 1.258_529_458_875_209_8e-26),
    Dd::new(1.147_074_559_772_972_5e-11, 2.065_551_275_283_074_5e-28),
    Dd::new(7.647_163_731_819_816e-13, 7.038_728_777_334_53e-30),
    Dd::new(4.779_477_332_387_385e-14, 4.399_205_485_834_081e-31),
    Dd::new(2.811_457_254_345_520_6e-15, 1.650_884_273_086_143_3e-31),
    Dd::new(1.561_920_696_858_622_5e-16, 1.191_067_966_027_375_4e-32),
    Dd::new(8.220_635_246_624_33e-18, 2.214_189_411_960_426_5e-34),
    Dd::new(4.110_317_623_312_165e-19, 1.441_297_337_865_952_7e-36),
    Dd::new(1.957_294_106_339_126_3e-20, -1.364_350_383_008_790_8e-36),
    Dd::new(8.896_791_392_450_574e-22, -7.911_402_614_872_376e-38),
    Dd::new(3.868_170_170_630_684e-23, -8.843_177_655_482_344e-40),
    Dd::new(1.611_737_571_096_118_4e-24, -3.684_657_356_450_976_6e-41),
    Dd::new(6.446_950_284_384_474e-26, -1.933_040_423_370_346_5e-42),
    Dd::new(2.479_596_263_224_797_6e-27, -1.295_373_096_476_522_9e-43),
    Dd::new(9.183_689_863_795_546e-29, 1.430_315_039_678_732_2e-45),
    Dd::new(3.279_889_237_069_838e-30, 1.511_754_274_402_987_9e-46),
    Dd::new(1.130_996_288_644_771_6e-31, 1.049_801_541_295_950_6e-47),
];

/// `1 / (2j + 1)` for j = 0..=21, as double-doubles: the series of `atanh`.
const INV_ODD: [Dd; 22] = [
    Dd::new(1.0, 0.0),
    Dd::new(0.333_333_333_333_333_3, 1.850_371_707_708_594e-17),
    Dd::new(0.2, -1.110_223_024_625_156_6e-17),
    Dd::new(0.142_857_142_857_142_85, 7.930_164_461_608_26e-18),
    Dd::new(0.111_111_111_111_111_1, 6.167_905_692_361_980_4e-18),
    Dd::new(0.090_909_090_909_090_91, -2.523_234_146_875_356e-18),
    Dd::new(0.076_923_076_923_076_93, -4.270_088_556_250_602e-18),
    Dd::new(0.066_666_666_666_666_67, 9.251_858_538_542_971e-19),
    Dd::new(0.058_823_529_411_764_705, 8.163_404_592_832_033e-19),
    Dd::new(0.052_631_578_947_368_42, 2.921_639_538_487_254e-18),
    Dd::new(0.047_619_047_619_047_616, 2.643_388_153_869_42e-18),
    Dd::new(0.043_478_260_869_565_216, 1.206_764_157_201_257e-18),
    Dd::new(0.04, -8.326_672_684_688_674e-19),
    Dd::new(0.037_037_037_037_037_035, 2.055_968_564_120_66e-18),
    Dd::new(0.034_482_758_620_689_655, 4.785_444_071_660_157e-19),
    Dd::new(0.032_258_064_516_129_03, 8.953_411_488_912_552e-19),
    Dd::new(0.030_303_030_303_030_304, -8.410_780_489_584_519e-19),
    Dd::new(0.028_571_428_571_428_57, 8.921_435_019_309_293e-19),
    Dd::new(0.027_027_027_027_027_03, -1.500_301_384_628_59e-18),
    Dd::new(0.025_641_025_641_025_64, 8.896_017_825_522_087e-19),
    Dd::new(0.024_390_243_902_439_025, -8.462_065_736_472_23e-19),
    Dd::new(0.023_255_813_953_488_372, 3.227_392_513_445_222_5e-19),
];

/// ln 2 in three parts (double-double plus a third term).
const LN2: Dd = Dd::new(std::f64::consts::LN_2, 2.319_046_813_846_299_6e-17);
const LN2_3: f64 = 5.707_708_438_416_212e-34;
/// ln 2 with 32 significant bits (so `k * LN2_HI` is exact for |k| < 2^21) and the rest.
const LN2_HI: f64 = 0.693_147_180_601_954_5;
const LN2_LO: f64 = -4.200_915_072_681_084_6e-11;
const INV_LN2: f64 = std::f64::consts::LOG2_E;
/// pi / 2 as a double-double plus a third term.
const PIO2: Dd = Dd::new(std::f64::consts::FRAC_PI_2, 6.123_233_995_736_766e-17);
const PIO2_3: f64 = -1.497_384_904_859_169_8e-33;
/// pi / 2 in parts of 33, 33 and 53 bits (`k * part` exact for |k| < 2^20).
const PIO2_1: f64 = 1.570_796_326_734_125_6;
const PIO2_2: f64 = 6.077_100_506_303_966e-11;
const PIO2_R: f64 = 2.022_266_248_795_950_6e-21;
const INV_PIO2: f64 = std::f64::consts::FRAC_2_PI;
const SQRT_2: f64 = std::f64::consts::SQRT_2;
/// Arguments of `cos` up to here are reduced accurately by both paths.
const COS_FAST_LIMIT: f64 = 524_288.0;

/// The format a result is rounded to.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Format {
    F32,
    F64,
}

impl Format {
    /// Significant bits.
    fn precision(self) -> i64 {
        match self {
            Format::F32 => 24,
            Format::F64 => 53,
        }
    }
    /// The exponent of the smallest subnormal.
    fn quantum_min(self) -> i64 {
        match self {
            Format::F32 => -149,
            Format::F64 => -1074,
        }
    }
    /// The exponent of the largest binade.
    fn max_exponent(self) -> i64 {
        match self {
            Format::F32 => 127,
            Format::F64 => 1023,
        }
    }
}

/// `2^e` for -1074 <= e <= 1023, built from its bits.
fn pow2(e: i64) -> f64 {
    debug_assert!((-1074..=1023).contains(&e));
    if e >= -1022 {
        f64::from_bits(((e + 1023) as u64) << 52)
    } else {
        f64::from_bits(1u64 << (e + 1074))
    }
}

/// `x * 2^s` exactly unless the result is subnormal or out of range.
fn scale(mut x: f64, mut s: i64) -> f64 {
    while s > 1000 {
        x *= pow2(1000);
        s -= 1000;
    }
    while s < -1000 {
        x *= pow2(-1000);
        s += 1000;
    }
    x * pow2(s)
}

/// `x` rounded to the nearest integer, ties to even, for |x| < 2^51: adding and removing
/// 1.5 * 2^52 leaves no fraction bits. (`f64::round` and `round_ties_even` are C library calls
/// on baseline x86-64, several times slower; this is plain IEEE arithmetic.)
#[inline]
fn round_int(x: f64) -> f64 {
    const MAGIC: f64 = 6_755_399_441_055_744.0;
    (x + MAGIC) - MAGIC
}

/// Whether a finite `y` is an integer.
#[inline]
fn is_integer(y: f64) -> bool {
    y.abs() >= pow2(52) || round_int(y) == y
}

/// `x = m * 2^e` with `m` in `[sqrt(1/2), sqrt(2))`, for a positive finite `x`.
fn decompose(x: f64) -> (f64, i64) {
    let (x, bias) = if x < f64::MIN_POSITIVE {
        (x * pow2(54), -54)
    } else {
        (x, 0)
    };
    let bits = x.to_bits();
    let e = ((bits >> 52) & 0x7ff) as i64 - 1023 + bias;
    let m = f64::from_bits((bits & ((1u64 << 52) - 1)) | (1023u64 << 52));
    if m > SQRT_2 {
        (m * 0.5, e + 1)
    } else {
        (m, e)
    }
}

/// Rounds `(hi + lo) * 2^k` to `format`, ties to even (`hi` normal, `|lo| <= ulp(hi)`).
///
/// With `eps > 0` the value is an approximation of relative error at most `eps`, and the
/// result is `None` unless every value that close rounds the same way (Ziv's test).
#[allow(clippy::many_single_char_names)]
fn round_scaled(hi: f64, lo: f64, k: i64, eps: f64, format: Format) -> Option<f64> {
    if hi == 0.0 {
        return Some(hi);
    }
    let sign = if hi < 0.0 { -1.0 } else { 1.0 };
    let (hi, lo) = (hi * sign, lo * sign);
    let bits = hi.to_bits();
    let mut e = ((bits >> 52) & 0x7ff) as i64 - 1023 + k;
    if bits & ((1u64 << 52) - 1) == 0 && lo < 0.0 {
        e -= 1; // just below a power of two: the binade below
    }
    let p = format.precision();
    let q = (e - (p - 1)).max(format.quantum_min());
    let s = k - q;
    if s < -1100 {
        // Below a hundredth of the smallest subnormal's half: zero whatever the error.
        return Some(0.0 * sign);
    }
    let h = scale(hi, s);
    let l = scale(lo, s);
    // 0 <= h < 2^54: from 2^52 on, h is an integer already.
    let mut n = if h < pow2(52) { round_int(h) } else { h };
    let mut d = (h - n) + l;
    let odd = (n as u64) & 1 == 1;
    if d > 0.5 || (d == 0.5 && odd) {
        n += 1.0;
        d -= 1.0;
    } else if d < -0.5 || (d == -0.5 && odd) {
        n -= 1.0;
        d += 1.0;
    }
    if eps > 0.0 && 0.5 - d.abs() <= eps * (h + l) {
        return None;
    }
    if n == 0.0 {
        return Some(0.0 * sign);
    }
    // n < 2^(p+1); n * 2^q overflows the format when it reaches 2^(max + 1).
    let top = (n.to_bits() >> 52) as i64 - 1023 + q;
    if top > format.max_exponent() {
        return Some(f64::INFINITY * sign);
    }
    Some(sign * n * pow2(q))
}

// ----- the fast f64 path (relative errors of a few 2^-53) -----

/// `v`, an approximation of relative error at most `eps`, rounded to f32 when every value that
/// close rounds the same way (Ziv's test): both ends of the interval convert to the same f32.
/// The conversion is IEEE's correctly rounded one, subnormals and overflow included; `eps`
/// carries a margin for the rounding of the two ends themselves.
#[inline(always)]
fn f32_if_certain(v: f64, eps: f64) -> Option<f32> {
    let below = (v * (1.0 - eps)) as f32;
    let above = (v * (1.0 + eps)) as f32;
    (below == above).then_some(below)
}

/// `x^n` in f32 for `x > 0` finite and 1 <= n < 2^32 by squaring and multiplying in f64 (the
/// bias corrections' `beta^t`, every step: cheaper than a log and an exp), or `None` when
/// Ziv's test fails. Each product adds at most 2^-53 of relative error. An intermediate that
/// over- or underflows f64 means the result is far outside f32's range, where the rounding
/// gives inf or 0 all the same.
#[inline(always)]
fn powi_f32_fast(x: f64, n: u64) -> Option<f32> {
    let mut acc = x;
    let mut products = 0u32;
    for bit in (0..n.ilog2()).rev() {
        acc *= acc;
        products += 1;
        if (n >> bit) & 1 == 1 {
            acc *= x;
            products += 1;
        }
    }
    if acc == 0.0 || acc.is_infinite() {
        return Some(acc as f32);
    }
    if acc < f64::MIN_POSITIVE {
        return None; // subnormal: the error bound no longer holds
    }
    f32_if_certain(acc, f64::from(products + 1) * pow2(-52))
}

/// `x^y` in f32 for `x > 0` finite and `y` finite by the fast path, or `None` (Ziv's test
/// failed, about once in 2^18 calls, or |y ln x| >= 700, which is far outside f32's range).
#[inline(always)]
fn pow_f32_fast(x: f64, y: f64) -> Option<f32> {
    if y >= 1.0 && y < pow2(32) && is_integer(y) {
        return powi_f32_fast(x, y as u64);
    }
    let z = y * ln_fast(x);
    if z.is_nan() || z.abs() >= 700.0 {
        return None;
    }
    let (m, k) = exp_fast(z);
    f32_if_certain(m * pow2(k), (z.abs() + 1.0) * pow2(-48))
}

/// `ln x` for a positive finite x, relative error below 2^-50.
fn ln_fast(x: f64) -> f64 {
    let (m, e) = decompose(x);
    let f = m - 1.0; // exact (Sterbenz)
    let s = f / (2.0 + f);
    let z = s * s;
    // atanh series: ln m = 2s (1 + z/3 + z^2/5 + ...), z <= 0.0295, 12 terms.
    let mut sum = INV_ODD[11].hi;
    for c in INV_ODD[1..11].iter().rev() {
        sum = sum * z + c.hi;
    }
    let ln_m = 2.0 * s + 2.0 * s * (z * sum);
    let e = e as f64;
    e * LN2_HI + (e * LN2_LO + ln_m)
}

/// `exp(z) = m * 2^k` for |z| <= 1000, `m` in about `[0.7, 1.42]`, relative error below 2^-50.
fn exp_fast(z: f64) -> (f64, i64) {
    let k = round_int(z * INV_LN2);
    let r = (z - k * LN2_HI) - k * LN2_LO;
    let mut sum = INV_FACT[13].hi;
    for c in INV_FACT[..13].iter().rev() {
        sum = sum * r + c.hi;
    }
    (sum, k as i64)
}

/// `cos x` for |x| < 2^19 as (value, relative error bound).
fn cos_fast(x: f64) -> (f64, f64) {
    let k = round_int(x * INV_PIO2);
    let r = ((x - k * PIO2_1) - k * PIO2_2) - k * PIO2_R;
    let z = r * r;
    let quadrant = (k as i64) & 3;
    // cos r = sum (-1)^n r^2n / (2n)!, sin r = r sum (-1)^n r^2n / (2n+1)!, |r| <= pi/4.
    let value = if quadrant % 2 == 0 {
        let mut sum = INV_FACT[18].hi;
        for n in (0..9).rev() {
            sum = INV_FACT[2 * n].hi - z * sum;
        }
        sum
    } else {
        let mut sum = INV_FACT[19].hi;
        for n in (0..9).rev() {
            sum = INV_FACT[2 * n + 1].hi - z * sum;
        }
        r * sum
    };
    let value = if quadrant == 1 || quadrant == 2 {
        -value
    } else {
        value
    };
    // The reduction's error is absolute; relative to the result it grows as |r| shrinks (|r|
    // is at least ~2^-30 for an f32 argument).
    let eps = pow2(-48) + k.abs() * pow2(-100) / r.abs().max(f64::MIN_POSITIVE);
    (value, eps)
}

// ----- the double-double path (relative errors of a few 2^-104) -----

fn ln_dd(x: f64) -> Dd {
    let (m, e) = decompose(x);
    let f = m - 1.0;
    let s = Dd::from(f).div(two_sum(2.0, f));
    let z = s.mul(s);
    let mut sum = INV_ODD[21];
    for c in INV_ODD[..21].iter().rev() {
        sum = sum.mul(z).add(*c);
    }
    let ln_m = s.mul(sum).mul_f(2.0);
    let e = e as f64;
    LN2.mul_f(e).add(Dd::from(LN2_3 * e)).add(ln_m)
}

/// `exp(z) = m * 2^k` for |z| <= 1000, `m` in about `[0.7, 1.42]`.
fn exp_dd(z: Dd) -> (Dd, i64) {
    let k = round_int(z.hi * INV_LN2);
    let r = z.sub(LN2.mul_f(k)).sub(Dd::from(LN2_3 * k));
    // exp(r) = (exp(r / 256))^256; expm1 of the small argument, then 8 squarings of 1 + a
    // kept as a: (1 + a)^2 - 1 = a (a + 2).
    let r = Dd::new(r.hi / 256.0, r.lo / 256.0);
    let mut sum = INV_FACT[11];
    for c in INV_FACT[1..11].iter().rev() {
        sum = sum.mul(r).add(*c);
    }
    let mut a = sum.mul(r);
    for _ in 0..8 {
        a = a.mul(a.add(Dd::from(2.0)));
    }
    (Dd::from(1.0).add(a), k as i64)
}

/// `cos x` in double-double for a finite `x >= 0`, with a bound on its relative error.
fn cos_dd(x: f64) -> (Dd, f64) {
    // Beyond 2^60 the reduction below cannot be accurate (nor `k` split safely): reduce by
    // the double nearest 2 pi first. That is deterministic, not correctly rounded.
    let x = if x >= pow2(60) {
        x % (4.0 * PIO2.hi)
    } else {
        x
    };
    let k = round_int(x * INV_PIO2);
    // k * pi/2 as three exact products (two_prod) and a rounded third term.
    let r = Dd::from(x)
        .sub(two_prod(PIO2.hi, k))
        .sub(two_prod(PIO2.lo, k))
        .sub(Dd::from(PIO2_3 * k));
    let z = r.mul(r);
    let quadrant = (k.rem_euclid(4.0)) as i64;
    let value = if quadrant % 2 == 0 {
        let mut sum = INV_FACT[28];
        for n in (0..14).rev() {
            sum = INV_FACT[2 * n].sub(z.mul(sum));
        }
        sum
    } else {
        let mut sum = INV_FACT[29];
        for n in (0..14).rev() {
            sum = INV_FACT[2 * n + 1].sub(z.mul(sum));
        }
        r.mul(sum)
    };
    let value = if quadrant == 1 || quadrant == 2 {
        value.neg()
    } else {
        value
    };
    let eps = pow2(-96) + k * pow2(-150) / r.hi.abs().max(f64::MIN_POSITIVE);
    (value, eps)
}

/// `x^n = m * 2^k` for `x > 0` finite and 2 <= n < 2^32, by squaring and multiplying in
/// double-double (the bias corrections' `beta^t`: ~20 products instead of a log and an exp).
/// Relative error below `n * 2^-100`.
fn powi_dd(x: f64, n: u64) -> (Dd, i64) {
    let (m, e) = decompose(x);
    let mut acc = Dd::from(m);
    let mut k: i64 = 0;
    for bit in (0..n.ilog2()).rev() {
        acc = acc.mul(acc);
        k *= 2;
        if (n >> bit) & 1 == 1 {
            acc = acc.mul_f(m);
        }
        // Keep hi in [1, 2): the power of two moves to k exactly, so nothing over- or
        // underflows however large n is.
        let shift = ((acc.hi.to_bits() >> 52) & 0x7ff) as i64 - 1023;
        let scale = pow2(-shift);
        acc = Dd::new(acc.hi * scale, acc.lo * scale);
        k += shift;
    }
    (acc, k + e * n as i64)
}

/// The last integer powers computed on this thread, so that a step's `beta^t` comes from the
/// previous step's `beta^(t-1)` with one product. Only the speed depends on this cache: each
/// entry carries the bound of its relative error, and a result is returned only when Ziv's
/// test passes with that bound, so it is the correctly rounded value, the same whatever was
/// computed before.
#[derive(Clone, Copy)]
struct PowiEntry {
    base: u64,
    n: u64,
    m: Dd,
    k: i64,
    err: f64,
}

thread_local! {
    static POWI_CACHE: std::cell::Cell<([Option<PowiEntry>; 8], usize)> =
        const { std::cell::Cell::new(([None; 8], 0)) };
}

/// `x^n = m * 2^k` with a bound on its relative error, from the cache when `n` is the cached
/// exponent or the next one (the bound grows by 2^-103 per product; past 2^-80 the power is
/// recomputed).
fn powi_dd_cached(x: f64, n: u64) -> (Dd, i64, f64) {
    let base = x.to_bits();
    let (mut entries, mut next) = POWI_CACHE.get();
    let found = entries
        .iter()
        .position(|e| e.is_some_and(|e| e.base == base));
    let fresh = |n: u64| {
        let (m, k) = powi_dd(x, n);
        PowiEntry {
            base,
            n,
            m,
            k,
            err: n as f64 * pow2(-100),
        }
    };
    let entry = match found.and_then(|i| entries[i].map(|e| (i, e))) {
        Some((_, e)) if e.n == n => e,
        Some((i, e)) if e.n + 1 == n && e.err < pow2(-80) => {
            let (mx, ex) = decompose(x);
            let acc = e.m.mul_f(mx);
            let shift = ((acc.hi.to_bits() >> 52) & 0x7ff) as i64 - 1023;
            let scale = pow2(-shift);
            let advanced = PowiEntry {
                base,
                n,
                m: Dd::new(acc.hi * scale, acc.lo * scale),
                k: e.k + ex + shift,
                err: e.err + pow2(-103),
            };
            entries[i] = Some(advanced);
            POWI_CACHE.set((entries, next));
            return (advanced.m, advanced.k, advanced.err);
        }
        Some((i, _)) => {
            let e = fresh(n);
            entries[i] = Some(e);
            e
        }
        None => {
            let e = fresh(n);
            entries[next] = Some(e);
            next = (next + 1) % entries.len();
            e
        }
    };
    POWI_CACHE.set((entries, next));
    (entry.m, entry.k, entry.err)
}

// ----- exact integer powers -----

/// `x^n` rounded exactly when `x = M 2^E` (M odd) has `M^n < 2^128`.
fn pow_int_exact(x: f64, n: u64, format: Format) -> Option<f64> {
    let (m, e) = decompose(x);
    // m in [0.7, 1.42]: scale to an odd integer mantissa.
    let bits = (m * pow2(53)) as u64;
    let tz = bits.trailing_zeros();
    let odd = bits >> tz;
    let exp = e - 53 + i64::from(tz);
    let mut acc: u128 = 1;
    for _ in 0..n {
        acc = acc.checked_mul(u128::from(odd))?;
        if acc == 1 {
            break; // odd == 1: every further product is 1
        }
    }
    if acc >> 120 != 0 {
        return None;
    }
    let total_exp = exp.checked_mul(i64::try_from(n).ok()?)?;
    // acc = hi + lo exactly when it has at most 106 bits; more bits than a format's p + 1 can
    // never be a tie, so rounding hi + lo (a 2^-106-close value) is then exact enough too.
    let hi = acc as f64;
    let rest = if acc >= hi as u128 {
        (acc - hi as u128) as f64
    } else {
        -(((hi as u128) - acc) as f64)
    };
    round_scaled(hi, rest, total_exp, 0.0, format)
}

// ----- public functions -----

/// C99 `pow` for the special operands; `None` for the finite cases computed below.
fn pow_special(x: f64, y: f64) -> Option<f64> {
    if y == 0.0 || x == 1.0 {
        return Some(1.0);
    }
    if x.is_nan() || y.is_nan() {
        return Some(f64::NAN);
    }
    let y_integer = y.is_finite() && is_integer(y);
    let y_odd = y_integer && y.abs() < pow2(53) && (y as i64) % 2 != 0;
    if y.is_infinite() {
        let ax = x.abs();
        return Some(if ax == 1.0 {
            1.0
        } else if (ax < 1.0) == (y > 0.0) {
            0.0
        } else {
            f64::INFINITY
        });
    }
    if x == 0.0 || x.is_infinite() {
        let big = (x == 0.0) == (y < 0.0);
        let magnitude = if big { f64::INFINITY } else { 0.0 };
        let negative = y_odd && x.is_sign_negative();
        return Some(if negative { -magnitude } else { magnitude });
    }
    if x < 0.0 && !y_integer {
        return Some(f64::NAN);
    }
    None
}

fn pow_rounded(x: f64, y: f64, format: Format) -> f64 {
    if let Some(special) = pow_special(x, y) {
        return special;
    }
    let sign = if x < 0.0 && (y as i64) % 2 != 0 && y.abs() < pow2(53) {
        -1.0
    } else {
        1.0
    };
    let ax = x.abs();
    if ax == 1.0 {
        return sign; // x = -1 and an integer y
    }
    if y.abs() >= pow2(64) {
        // |y ln x| >= 2^64 * 2^-53: far beyond every format's range.
        let grows = (ax > 1.0) == (y > 0.0);
        return sign * if grows { f64::INFINITY } else { 0.0 };
    }
    if format == Format::F32 {
        if let Some(r) = pow_f32_fast(ax, y) {
            return sign * f64::from(r);
        }
    }
    if y >= 2.0 && y < pow2(32) && is_integer(y) {
        let (m, k, err) = powi_dd_cached(ax, y as u64);
        if let Some(r) = round_scaled(m.hi, m.lo, k, err, format) {
            return sign * r;
        }
    }
    let z = ln_dd(ax).mul_f(y);
    if z.hi > 1000.0 {
        return sign * f64::INFINITY;
    }
    if z.hi < -1000.0 {
        return sign * 0.0;
    }
    let (m, k) = exp_dd(z);
    let eps = (z.hi.abs() + 1.0) * pow2(-96);
    if let Some(r) = round_scaled(m.hi, m.lo, k, eps, format) {
        return sign * r;
    }
    if y > 0.0 && is_integer(y) {
        if let Some(r) = pow_int_exact(ax, y as u64, format) {
            return sign * r;
        }
    }
    sign * round_scaled(m.hi, m.lo, k, 0.0, format).unwrap_or(f64::NAN)
}

fn ln_rounded(x: f64, format: Format) -> f64 {
    if x.is_nan() || x < 0.0 {
        return f64::NAN;
    }
    if x == 0.0 {
        return f64::NEG_INFINITY;
    }
    if x.is_infinite() {
        return f64::INFINITY;
    }
    if x == 1.0 {
        return 0.0;
    }
    if format == Format::F32 {
        if let Some(r) = f32_if_certain(ln_fast(x), pow2(-48)) {
            return f64::from(r);
        }
    }
    let v = ln_dd(x);
    round_scaled(v.hi, v.lo, 0, pow2(-98), format)
        .or_else(|| round_scaled(v.hi, v.lo, 0, 0.0, format))
        .unwrap_or(f64::NAN)
}

fn cos_rounded(x: f64, format: Format) -> f64 {
    if !x.is_finite() {
        return f64::NAN;
    }
    if x == 0.0 {
        return 1.0;
    }
    let x = x.abs();
    if format == Format::F32 && x < COS_FAST_LIMIT {
        let (v, eps) = cos_fast(x);
        if let Some(r) = f32_if_certain(v, eps) {
            return f64::from(r);
        }
    }
    let (v, eps) = cos_dd(x);
    round_scaled(v.hi, v.lo, 0, eps, format)
        .or_else(|| round_scaled(v.hi, v.lo, 0, 0.0, format))
        .unwrap_or(f64::NAN)
}

/// `x^y` correctly rounded to f32 (C99 `powf` for the special operands).
#[must_use]
#[inline]
pub fn pow_f32(x: f32, y: f32) -> f32 {
    // The common case inline (Ftrl calls this per element); the rest out of line.
    if x > 0.0 && x < f32::INFINITY && y.is_finite() {
        if let Some(r) = pow_f32_fast(f64::from(x), f64::from(y)) {
            return r;
        }
    }
    pow_rounded(f64::from(x), f64::from(y), Format::F32) as f32
}

/// `x^y` correctly rounded to f64 (C99 `pow` for the special operands).
#[must_use]
pub fn pow_f64(x: f64, y: f64) -> f64 {
    pow_rounded(x, y, Format::F64)
}

/// `ln x` correctly rounded to f32 (NaN below 0, -inf at 0).
#[must_use]
pub fn ln_f32(x: f32) -> f32 {
    ln_rounded(f64::from(x), Format::F32) as f32
}

/// `ln x` correctly rounded to f64 (NaN below 0, -inf at 0).
#[must_use]
pub fn ln_f64(x: f64) -> f64 {
    ln_rounded(x, Format::F64)
}

/// `cos x` correctly rounded to f32 (NaN for an infinite x).
#[must_use]
pub fn cos_f32(x: f32) -> f32 {
    cos_rounded(f64::from(x), Format::F32) as f32
}

/// `cos x` correctly rounded to f64 (NaN for an infinite x).
#[must_use]
pub fn cos_f64(x: f64) -> f64 {
    cos_rounded(x, Format::F64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::xorshift::Rng;

    fn same(a: f64, b: f64) -> bool {
        a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
    }

    #[test]
    fn exact_powers_and_ties_to_even() {
        assert_eq!(pow_f32(0.5, 3.0), 0.125);
        assert_eq!(pow_f64(2.0, 10.0), 1024.0);
        assert_eq!(pow_f64(10.0, 22.0), 1e22);
        // (1 + 2^-12)^2 = 1 + 2^-11 + 2^-24: an f32 midpoint, rounded to the even neighbour.
        assert_eq!(pow_f32(1.0 + 2f32.powi(-12), 2.0), 1.0 + 2f32.powi(-11));
        // 257^3 = 16974593 needs 25 bits: a midpoint reached through a non-integer power.
        assert_eq!(pow_f32(66049.0, 1.5), 16_974_592.0);
        // Subnormal and underflowing results.
        assert_eq!(pow_f32(0.5, 149.0), f32::from_bits(1));
        assert_eq!(pow_f32(0.5, 150.0), 0.0); // a tie between 0 and the smallest subnormal
        assert_eq!(pow_f64(0.5, 1074.0), f64::from_bits(1));
        assert_eq!(pow_f64(0.5, 1075.0), 0.0);
        assert_eq!(pow_f32(3.0, 200.0), f32::INFINITY);
        assert_eq!(pow_f32(-2.0, 3.0), -8.0);
        assert_eq!(pow_f32(-2.0, -1.0), -0.5);
    }

    #[test]
    fn special_operands_follow_c99() {
        let cases: [(f64, f64, f64); 16] = [
            (f64::NAN, 0.0, 1.0),
            (1.0, f64::NAN, 1.0),
            (f64::NAN, 1.0, f64::NAN),
            (-1.0, f64::INFINITY, 1.0),
            (-1.0, 1e300, 1.0),
            (0.5, f64::INFINITY, 0.0),
            (0.5, f64::NEG_INFINITY, f64::INFINITY),
            (2.0, f64::NEG_INFINITY, 0.0),
            (0.0, -1.0, f64::INFINITY),
            (-0.0, -1.0, f64::NEG_INFINITY),
            (-0.0, 3.0, -0.0),
            (-0.0, 0.5, 0.0),
            (f64::NEG_INFINITY, 3.0, f64::NEG_INFINITY),
            (f64::NEG_INFINITY, -3.0, -0.0),
            (-2.0, 0.5, f64::NAN),
            (0.999, 1e30, 0.0),
        ];
        for (x, y, want) in cases {
            assert!(
                same(pow_f64(x, y), want),
                "pow({x}, {y}) = {}",
                pow_f64(x, y)
            );
            assert!(
                same(
                    f64::from(pow_f32(x as f32, y as f32)),
                    f64::from(want as f32)
                ),
                "powf({x}, {y})"
            );
        }
        assert_eq!(ln_f64(1.0), 0.0);
        assert_eq!(ln_f32(0.0), f32::NEG_INFINITY);
        assert!(ln_f64(-1.0).is_nan());
        assert_eq!(ln_f64(f64::INFINITY), f64::INFINITY);
        assert_eq!(cos_f64(0.0), 1.0);
        assert!(cos_f32(f32::INFINITY).is_nan());
    }

    /// Integer powers whose exact value fits 128 bits, against that exact value.
    #[test]
    fn integer_powers_match_the_exact_value() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for _ in 0..20_000 {
            // A mantissa of 16 bits and an exponent up to 7: at most 112 bits.
            let x =
                (1.0 + (rng.bits() % 65_536) as f64 / 65_536.0) * pow2(-((rng.bits() % 3) as i64));
            let n = 1 + rng.bits() % 7;
            let exact64 = pow_int_exact(x, n, Format::F64).unwrap();
            assert!(same(pow_f64(x, n as f64), exact64), "{x}^{n}");
            let exact32 = pow_int_exact(x, n, Format::F32).unwrap();
            assert!(
                same(f64::from(pow_f32(x as f32, n as f32)), exact32),
                "{x}^{n} f32"
            );
        }
    }

    /// Consecutive powers (one step after another) come from the cache, and give the same bits
    /// as powers computed from scratch.
    #[test]
    fn cached_consecutive_powers_equal_fresh_ones() {
        for &x in &[0.9, 0.999, 0.95, 1.0001, 0.5 + 1e-9] {
            let first = 2 + (x * 1000.0) as u64;
            for n in first..first + 3000 {
                let cached = pow_f64(x, n as f64);
                let (m, k) = powi_dd(x, n);
                let fresh = round_scaled(m.hi, m.lo, k, n as f64 * pow2(-100), Format::F64)
                    .unwrap_or_else(|| pow_f64(x, n as f64));
                assert!(same(cached, fresh), "{x}^{n}");
            }
        }
    }

    /// Powers by squaring (bias corrections) agree with `exp(n ln x)` in double-double.
    #[test]
    fn powers_by_squaring_agree_with_exp_of_log() {
        let mut rng = Rng(99);
        for _ in 0..5_000 {
            let x = 0.5 + rng.unit();
            let n = 2 + rng.bits() % 2_000_000;
            let (m, k) = exp_dd(ln_dd(x).mul_f(n as f64));
            let want = round_scaled(m.hi, m.lo, k, 0.0, Format::F64).unwrap();
            assert!(same(pow_f64(x, n as f64), want), "{x}^{n}");
            // The f32 path squares in plain f64.
            let (x32, n32) = (f64::from(x as f32), (n % 100_000) as f32);
            let (m, k) = exp_dd(ln_dd(x32).mul_f(f64::from(n32)));
            let want = round_scaled(m.hi, m.lo, k, 0.0, Format::F32).unwrap();
            assert!(
                same(f64::from(pow_f32(x32 as f32, n32)), want),
                "{x32}^{n32} f32"
            );
        }
    }

    /// The f32 fast paths agree with the double-double paths wherever Ziv's test lets them
    /// answer (the two are independent computations of the same number).
    #[test]
    fn fast_paths_agree_with_double_double() {
        let mut rng = Rng(12345);
        for _ in 0..20_000 {
            let x = f64::from((rng.unit() * 2.0) as f32);
            let y = f64::from(((rng.unit() - 0.3) * 300.0) as f32);
            let slow = {
                let z = ln_dd(x).mul_f(y);
                let (m, k) = exp_dd(z);
                round_scaled(m.hi, m.lo, k, 0.0, Format::F32).unwrap()
            };
            assert!(
                same(f64::from(pow_f32(x as f32, y as f32)), slow),
                "pow({x}, {y})"
            );
            let ln_slow = {
                let v = ln_dd(x);
                round_scaled(v.hi, v.lo, 0, 0.0, Format::F32).unwrap()
            };
            assert!(same(f64::from(ln_f32(x as f32)), ln_slow), "ln({x})");
            let c = f64::from((rng.unit() * 10.0) as f32);
            let cos_slow = {
                let (v, _) = cos_dd(c);
                round_scaled(v.hi, v.lo, 0, 0.0, Format::F32).unwrap()
            };
            assert!(same(f64::from(cos_f32(c as f32)), cos_slow), "cos({c})");
        }
    }

    /// Close to `std`'s (the C library's) functions, which are within an ulp or so.
    #[test]
    fn within_an_ulp_of_the_c_library() {
        let mut rng = Rng(777);
        let ulps = |a: f64, b: f64| (a.to_bits() as i64 - b.to_bits() as i64).abs();
        for _ in 0..20_000 {
            let x = rng.unit() * 3.0;
            let y = (rng.unit() - 0.5) * 200.0;
            assert!(ulps(pow_f64(x, y), x.powf(y)) <= 1, "pow({x}, {y})");
            assert!(ulps(ln_f64(x), x.ln()) <= 1, "ln({x})");
            assert!(ulps(cos_f64(y), y.cos()) <= 1, "cos({y})");
        }
    }
}
