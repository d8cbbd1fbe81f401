//! Which crate should compute the matrix products of Muon's Newton-Schulz iteration?
//!
//! For X of shape (m, n) with m <= n (the iteration works on the wide orientation), one
//! iteration is three products:
//!
//! ```text
//! A  = X X^T          (m x n)(n x m)
//! B  = b A + c A A    (m x m)(m x m)
//! X' = a X + B X      (m x m)(m x n)
//! ```
//!
//! Each product is timed with every crate on the same inputs, in one process at one thread
//! count, the crates interleaved (the order rotates every round) so that other work on the
//! machine hurts them alike; the best round counts. `matrixmultiply` reads its thread count
//! once per process (`MATMUL_NUM_THREADS`), so the program runs itself once per thread count.
//! Every crate's results are compared with `gemm` 0.18's (the crate ferroptim uses today).
//!
//! A and B are symmetric, so two more columns compute only their lower triangle and mirror
//! it: faer's triangular product, and gemm 0.18 called on block rows of the triangle.
//!
//! Usage: `cargo run --release --manifest-path benches/gemm/Cargo.toml [-- [--threads 1,2]
//! [--rounds 7] [--shapes 128x512,768x768,768x3072,1024x4096]]`

use std::num::NonZeroUsize;
use std::process::Command;
use std::time::Instant;

/// Muon's default coefficients (keras.optimizers.Muon).
const NS_A: f64 = 3.4445;
const NS_B: f64 = -4.7750;
const NS_C: f64 = 2.0315;
/// A timed call is looped until it lasts this long, so small products are measured above the
/// timer's and the thread pool's noise.
const MIN_SAMPLE_S: f64 = 0.02;
/// Block rows of the lower triangle for `GemmLower`: (k + 1) / 2k of the full product's flops
/// for k blocks, in k products that each parallelize less well than one.
const LOWER_BLOCKS: usize = 4;

#[derive(Clone, Copy, PartialEq)]
enum Crate {
    Gemm018,
    Gemm019,
    MatrixMultiply,
    Faer,
    /// gemm 0.18 on the block rows of the lower triangle of A and B, then mirrored.
    GemmLower,
    /// faer's product of the lower triangle of A and B only, then mirrored.
    FaerLower,
}

const CRATES: [Crate; 6] = [
    Crate::Gemm018,
    Crate::Gemm019,
    Crate::MatrixMultiply,
    Crate::Faer,
    Crate::GemmLower,
    Crate::FaerLower,
];

impl Crate {
    fn name(self) -> &'static str {
        match self {
            Crate::Gemm018 => "gemm 0.18",
            Crate::Gemm019 => "gemm 0.19",
            Crate::MatrixMultiply => "matrixmultiply 0.3",
            Crate::Faer => "faer 0.24",
            Crate::GemmLower => "gemm 0.18, lower blocks",
            Crate::FaerLower => "faer 0.24, lower half",
        }
    }
}

/// A block of a row-major array (`rows x cols` elements, rows `ld` elements apart), used as is
/// or transposed: X^T is X's own array read with swapped strides, as ferroptim passes it.
#[derive(Clone, Copy)]
struct Operand<'a, T> {
    data: &'a [T],
    rows: usize,
    cols: usize,
    ld: usize,
    transposed: bool,
}

impl<'a, T> Operand<'a, T> {
    fn new(data: &'a [T], rows: usize, cols: usize) -> Self {
        let (ld, transposed) = (cols, false);
        Operand {
            data,
            rows,
            cols,
            ld,
            transposed,
        }
    }

    fn t(self) -> Self {
        Operand {
            transposed: !self.transposed,
            ..self
        }
    }

    /// Rows `start..end` of the operand as used.
    fn used_rows(self, start: usize, end: usize) -> Self {
        if self.transposed {
            Operand {
                data: &self.data[start..],
                cols: end - start,
                ..self
            }
        } else {
            Operand {
                data: &self.data[start * self.ld..],
                rows: end - start,
                ..self
            }
        }
    }

    /// Columns `start..end` of the operand as used.
    fn used_cols(self, start: usize, end: usize) -> Self {
        self.t().used_rows(start, end).t()
    }

    /// (rows, cols, row stride, column stride) of the operand as used.
    fn layout(&self) -> (usize, usize, isize, isize) {
        assert!(self.rows == 0 || (self.rows - 1) * self.ld + self.cols <= self.data.len());
        if self.transposed {
            (self.cols, self.rows, 1, self.ld as isize)
        } else {
            (self.rows, self.cols, self.ld as isize, 1)
        }
    }
}

/// f32 and f64: each crate's entry point for the type.
trait Real: Copy + Send + Sync + 'static + std::ops::Mul<Output = Self> {
    const NAME: &'static str;
    fn from_f64(x: f64) -> Self;
    fn to_f64(self) -> f64;
    /// `dst = alpha * lhs rhs` (+ dst when `accumulate`); dst is row-major with rows `ld`
    /// apart. `FaerLower` writes the lower triangle only; `GemmLower` is not a crate here.
    #[allow(clippy::too_many_arguments)]
    fn product(
        krate: Crate,
        threads: usize,
        dst: &mut [Self],
        ld: usize,
        lhs: Operand<Self>,
        rhs: Operand<Self>,
        alpha: Self,
        accumulate: bool,
    );
}

macro_rules! real {
    ($t:ty, $mm:path) => {
        impl Real for $t {
            const NAME: &'static str = stringify!($t);
            fn from_f64(x: f64) -> Self {
                x as $t
            }
            fn to_f64(self) -> f64 {
                f64::from(self)
            }
            fn product(
                krate: Crate,
                threads: usize,
                dst: &mut [Self],
                ld: usize,
                lhs: Operand<Self>,
                rhs: Operand<Self>,
                alpha: Self,
                accumulate: bool,
            ) {
                let (m, k, lhs_rs, lhs_cs) = lhs.layout();
                let (k2, n, rhs_rs, rhs_cs) = rhs.layout();
                assert!(k == k2 && n <= ld && (m == 0 || (m - 1) * ld + n <= dst.len()));
                let (d, l, r, ld) = (
                    dst.as_mut_ptr(),
                    lhs.data.as_ptr(),
                    rhs.data.as_ptr(),
                    ld as isize,
                );
                let beta = if accumulate { 1.0 } else { 0.0 };
                // SAFETY: the assertions above (and in `layout`) bound every access of the
                // stated shapes and strides; `dst` is a unique borrow, so it aliases neither
                // input.
                unsafe {
                    match krate {
                        Crate::Gemm018 => gemm::gemm(
                            m,
                            n,
                            k,
                            d,
                            1,
                            ld,
                            accumulate,
                            l,
                            lhs_cs,
                            lhs_rs,
                            r,
                            rhs_cs,
                            rhs_rs,
                            1.0,
                            alpha,
                            false,
                            false,
                            false,
                            if threads > 1 {
                                gemm::Parallelism::Rayon(threads)
                            } else {
                                gemm::Parallelism::None
                            },
                        ),
                        Crate::Gemm019 => gemm_0_19::gemm(
                            m,
                            n,
                            k,
                            d,
                            1,
                            ld,
                            accumulate,
                            l,
                            lhs_cs,
                            lhs_rs,
                            r,
                            rhs_cs,
                            rhs_rs,
                            1.0,
                            alpha,
                            false,
                            false,
                            false,
                            if threads > 1 {
                                gemm_0_19::Parallelism::Rayon(threads)
                            } else {
                                gemm_0_19::Parallelism::None
                            },
                        ),
                        // Threads: MATMUL_NUM_THREADS, read at its first call.
                        Crate::MatrixMultiply => $mm(
                            m, k, n, alpha, l, lhs_rs, lhs_cs, r, rhs_rs, rhs_cs, beta, d, ld, 1,
                        ),
                        Crate::Faer | Crate::FaerLower => {
                            use faer::linalg::matmul::triangular::{matmul, BlockStructure};
                            let structure = if krate == Crate::Faer {
                                BlockStructure::Rectangular
                            } else {
                                BlockStructure::TriangularLower
                            };
                            matmul(
                                faer::MatMut::from_raw_parts_mut(d, m, n, ld, 1),
                                structure,
                                if accumulate {
                                    faer::Accum::Add
                                } else {
                                    faer::Accum::Replace
                                },
                                faer::MatRef::from_raw_parts(l, m, k, lhs_rs, lhs_cs),
                                BlockStructure::Rectangular,
                                faer::MatRef::from_raw_parts(r, k, n, rhs_rs, rhs_cs),
                                BlockStructure::Rectangular,
                                alpha,
                                match NonZeroUsize::new(threads) {
                                    Some(t) if threads > 1 => faer::Par::Rayon(t),
                                    _ => faer::Par::Seq,
                                },
                            );
                        }
                        Crate::GemmLower => unreachable!("block rows of gemm 0.18 calls"),
                    }
                }
            }
        }
    };
}

real!(f32, matrixmultiply::sgemm);
real!(f64, matrixmultiply::dgemm);

#[derive(Clone, Copy)]
enum Step {
    Gram,
    Poly,
    Next,
}

impl Step {
    fn name(self) -> &'static str {
        match self {
            Step::Gram => "A = X X^T",
            Step::Poly => "B = bA + cAA",
            Step::Next => "X' = aX + BX",
        }
    }

    /// Multiply-adds times two of the full product (the element-wise scaling of B and X' is
    /// not counted, nor is the half a triangular product skips).
    fn flops(self, m: usize, n: usize) -> f64 {
        let (m, n) = (m as f64, n as f64);
        match self {
            Step::Gram | Step::Next => 2.0 * m * m * n,
            Step::Poly => 2.0 * m * m * m,
        }
    }
}

/// The inputs of one iteration, all from the same X: A and B are computed once (with gemm
/// 0.18) so that every crate multiplies identical operands.
struct Inputs<T> {
    m: usize,
    n: usize,
    x: Vec<T>,
    gram: Vec<T>,
    poly: Vec<T>,
}

/// Copies the lower triangle of the row-major `m x m` matrix onto its upper triangle.
fn mirror_lower<T: Copy>(a: &mut [T], m: usize) {
    for i in 0..m {
        for j in 0..i {
            a[j * m + i] = a[i * m + j];
        }
    }
}

/// `dst (+)= alpha * lhs rhs` for an `m x m` result, the whole of it or (`Lower` variants) its
/// lower triangle, mirrored.
#[allow(clippy::too_many_arguments)]
fn square_product<T: Real>(
    krate: Crate,
    threads: usize,
    dst: &mut [T],
    m: usize,
    lhs: Operand<T>,
    rhs: Operand<T>,
    alpha: T,
    accumulate: bool,
) {
    if krate == Crate::GemmLower {
        for start in (0..m).step_by(m.div_ceil(LOWER_BLOCKS)) {
            let end = (start + m.div_ceil(LOWER_BLOCKS)).min(m);
            let (l, r) = (lhs.used_rows(start, end), rhs.used_cols(0, end));
            T::product(
                Crate::Gemm018,
                threads,
                &mut dst[start * m..],
                m,
                l,
                r,
                alpha,
                accumulate,
            );
        }
    } else {
        T::product(krate, threads, dst, m, lhs, rhs, alpha, accumulate);
    }
    if matches!(krate, Crate::GemmLower | Crate::FaerLower) {
        mirror_lower(dst, m);
    }
}

fn run<T: Real>(step: Step, krate: Crate, threads: usize, inp: &Inputs<T>, out: &mut [T]) {
    let (m, n) = (inp.m, inp.n);
    let one = T::from_f64(1.0);
    match step {
        Step::Gram => {
            let x = Operand::new(&inp.x, m, n);
            square_product(krate, threads, out, m, x, x.t(), one, false);
        }
        Step::Poly => {
            // The element-wise part is the same code for every crate (faer has no scaling of
            // the destination, so each crate gets it this way).
            let b = T::from_f64(NS_B);
            for (o, &g) in out.iter_mut().zip(&inp.gram) {
                *o = b * g;
            }
            let a = Operand::new(&inp.gram, m, m);
            square_product(krate, threads, out, m, a, a, T::from_f64(NS_C), true);
        }
        Step::Next => {
            let a = T::from_f64(NS_A);
            for (o, &x) in out.iter_mut().zip(&inp.x) {
                *o = a * x;
            }
            // Not symmetric: the triangle variants run their crate's full product.
            let krate = match krate {
                Crate::GemmLower => Crate::Gemm018,
                Crate::FaerLower => Crate::Faer,
                other => other,
            };
            let (b, x) = (Operand::new(&inp.poly, m, m), Operand::new(&inp.x, m, n));
            T::product(krate, threads, out, n, b, x, one, true);
        }
    }
}

/// X with entries from an integer hash in [-0.5, 0.5), scaled to unit Frobenius norm as
/// Newton-Schulz scales it.
fn inputs<T: Real>(m: usize, n: usize, threads: usize) -> Inputs<T> {
    let raw: Vec<f64> = (0..m * n)
        .map(|i| ((i as u64).wrapping_mul(2_654_435_761) % (1 << 32)) as f64 / 2f64.powi(32) - 0.5)
        .collect();
    let norm = raw.iter().map(|v| v * v).sum::<f64>().sqrt();
    let x: Vec<T> = raw.iter().map(|v| T::from_f64(v / norm)).collect();
    let zero = T::from_f64(0.0);
    let mut inp = Inputs {
        m,
        n,
        x,
        gram: vec![zero; m * m],
        poly: vec![zero; m * m],
    };
    let mut gram = vec![zero; m * m];
    run(Step::Gram, Crate::Gemm018, threads, &inp, &mut gram);
    inp.gram = gram;
    let mut poly = vec![zero; m * m];
    run(Step::Poly, Crate::Gemm018, threads, &inp, &mut poly);
    inp.poly = poly;
    inp
}

fn seconds_per_call(calls: usize, mut f: impl FnMut()) -> f64 {
    let start = Instant::now();
    for _ in 0..calls {
        f();
    }
    start.elapsed().as_secs_f64() / calls as f64
}

/// Best seconds per call of each crate for one step, and each crate's largest absolute
/// difference from gemm 0.18's result, with that result's largest magnitude.
fn measure<T: Real>(
    step: Step,
    inp: &Inputs<T>,
    threads: usize,
    rounds: usize,
) -> ([f64; CRATES.len()], [f64; CRATES.len()], f64) {
    let len = match step {
        Step::Gram | Step::Poly => inp.m * inp.m,
        Step::Next => inp.m * inp.n,
    };
    let mut outs: Vec<Vec<T>> = CRATES.iter().map(|_| vec![T::from_f64(0.0); len]).collect();
    // Warm-up (first-touch pages, pools, packing buffers), then as many calls per sample as
    // fill MIN_SAMPLE_S for the slowest crate.
    let mut calls = 1;
    for (c, out) in CRATES.iter().zip(&mut outs) {
        run(step, *c, threads, inp, out);
        let once = seconds_per_call(1, || run(step, *c, threads, inp, out));
        calls = calls.max((MIN_SAMPLE_S / once).ceil() as usize);
    }
    let calls = calls.min(1000);
    let mut best = [f64::INFINITY; CRATES.len()];
    for round in 0..rounds {
        for i in 0..CRATES.len() {
            let c = (i + round) % CRATES.len();
            let out = &mut outs[c];
            let t = seconds_per_call(calls, || run(step, CRATES[c], threads, inp, out));
            best[c] = best[c].min(t);
        }
    }
    let reference = &outs[0];
    let scale = reference
        .iter()
        .fold(0.0f64, |s, v| s.max(v.to_f64().abs()));
    let mut diff = [0.0; CRATES.len()];
    for (d, out) in diff.iter_mut().zip(&outs) {
        *d = out
            .iter()
            .zip(reference)
            .fold(0.0f64, |s, (a, b)| s.max((a.to_f64() - b.to_f64()).abs()));
    }
    (best, diff, scale)
}

fn gflops(flops: f64, seconds: f64) -> String {
    format!("{:.1}", flops / seconds / 1e9)
}

fn table<T: Real>(shapes: &[(usize, usize)], threads: usize, rounds: usize) {
    let sci = |x: f64| {
        if x == 0.0 {
            "0".to_string()
        } else {
            format!("{x:.0e}")
        }
    };
    for &(m, n) in shapes {
        assert!(
            m <= n,
            "Newton-Schulz works on the wide orientation: m <= n"
        );
        let inp = inputs::<T>(m, n, threads);
        let mut total = [0.0; CRATES.len()];
        let mut total_flops = 0.0;
        for step in [Step::Gram, Step::Poly, Step::Next] {
            let (best, diff, scale) = measure(step, &inp, threads, rounds);
            let flops = step.flops(m, n);
            total_flops += flops;
            let mut cells: Vec<String> = best.iter().map(|&s| gflops(flops, s)).collect();
            for (t, s) in total.iter_mut().zip(best) {
                *t += s;
            }
            let diffs: Vec<String> = diff[1..].iter().map(|&d| sci(d)).collect();
            cells.push(format!("{} of {}", diffs.join(" / "), sci(scale)));
            let name = step.name();
            println!(
                "| {threads} | {} | {m}x{n} | {name} | {} |",
                T::NAME,
                cells.join(" | ")
            );
        }
        // One iteration: the three products; each crate's speed relative to gemm 0.18.
        let cells: Vec<String> = total
            .iter()
            .map(|&s| format!("**{}** ({:.2}x)", gflops(total_flops, s), total[0] / s))
            .collect();
        println!(
            "| {threads} | {} | {m}x{n} | iteration ({:.1} ms with gemm 0.18) | {} | |",
            T::NAME,
            total[0] * 1e3,
            cells.join(" | ")
        );
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let option = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .map(|i| args[i + 1].clone())
    };
    let rounds: usize = option("--rounds").map_or(7, |s| s.parse().expect("--rounds N"));
    let shapes: Vec<(usize, usize)> = option("--shapes")
        .unwrap_or_else(|| "128x512,768x768,768x3072,1024x4096".into())
        .split(',')
        .map(|s| {
            let (m, n) = s.split_once('x').expect("--shapes MxN,...");
            (m.trim().parse().unwrap(), n.trim().parse().unwrap())
        })
        .collect();
    if let Some(threads) = option("--child") {
        // One thread count per process: every crate runs on this rayon pool, matrixmultiply on
        // its own (MATMUL_NUM_THREADS, set by the parent).
        let threads: usize = threads.parse().unwrap();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            table::<f32>(&shapes, threads, rounds);
            table::<f64>(&shapes, threads, rounds);
        });
        return;
    }
    // Other work on the machine moves absolute figures (and thread scaling most).
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load = load
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ");
    println!(
        "Load average at start: {}.",
        if load.is_empty() { "unknown" } else { &load }
    );
    println!(
        "GFLOP/s of each product (2 m^2 n or 2 m^3 flops), best of {rounds} interleaved rounds;"
    );
    println!("last column: max |difference| from gemm 0.18 of each other column, of the result's max |value|.\n");
    let names: Vec<&str> = CRATES.iter().map(|c| c.name()).collect();
    println!(
        "| threads | dtype | m x n | product | {} | max abs diff |",
        names.join(" | ")
    );
    println!("|---:|:---|:---|:---|{}---:|", "---:|".repeat(CRATES.len()));
    let exe = std::env::current_exe().unwrap();
    let threads = option("--threads").unwrap_or_else(|| "1,2".into());
    for threads in threads.split(',').map(str::trim) {
        let mut child = Command::new(&exe);
        child.args(&args[1..]).args(["--child", threads]);
        let status = child.env("MATMUL_NUM_THREADS", threads).status().unwrap();
        assert!(status.success(), "the run at {threads} thread(s) failed");
    }
}
