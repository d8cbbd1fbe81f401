//! The driver against plain scalar loops, bitwise: every length from 0 to a few work items,
//! strided operands, the fused prologue, every SIMD level and thread count.

use _native::kernels::adam::{Adam, AdamParams};
use _native::kernels::driver::{CHUNK, INLINE_BELOW};
use _native::kernels::layout::Operand;
use _native::kernels::sgd::{Sgd, SgdParams};
use _native::kernels::{
    pool, run, simd, Clip, Grad, Hyperparameters, Mode, Prologue, Real, Rows, Rule, Tensor,
};
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
// The unit tests' generator (they use all of it).
#[allow(dead_code)]
#[path = "../src/kernels/xorshift.rs"]
mod xorshift;
use xorshift::Rng;

fn sgd<T: Real>(learning_rate: f64, momentum: f64, nesterov: bool) -> Sgd<T> {
    SgdParams {
        learning_rate,
        momentum,
        nesterov,
    }
    .build()
}

fn adam<T: Real>(
    learning_rate: f64,
    beta_1: f64,
    beta_2: f64,
    epsilon: f64,
    iterations: u64,
    amsgrad: bool,
) -> Adam<T> {
    AdamParams {
        learning_rate,
        beta_1,
        beta_2,
        epsilon,
        iterations,
        amsgrad,
    }
    .build()
}

/// Tests that change the process-wide thread count or SIMD level take this lock.
static GLOBAL: Mutex<()> = Mutex::new(());

/// Uniform in [-1, 1), from the top 24 bits.
fn uniform(rng: &mut Rng) -> f32 {
    ((rng.bits() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
}

fn uniforms(rng: &mut Rng, n: usize) -> Vec<f32> {
    (0..n).map(|_| uniform(rng)).collect()
}

/// A tensor of `shape` from its operands: no accumulator or average, weight decay on.
fn tensor_of<T: Real>(
    shape: &[usize],
    param: Operand<T>,
    grad: Grad<T>,
    slots: Vec<Operand<T>>,
) -> Tensor<T> {
    Tensor {
        len: shape.iter().product(),
        shape: shape.into(),
        param,
        grad: Some(grad),
        slots,
        accumulator: None,
        average: None,
        decay: true,
    }
}

/// A contiguous vector tensor.
fn tensor(p: &mut [f32], g: &mut [f32], slots: &mut [&mut Vec<f32>]) -> Tensor<f32> {
    tensor_of(
        &[p.len()],
        Operand::contiguous(p.as_mut_ptr()),
        Grad::Same(Operand::contiguous(g.as_mut_ptr())),
        slots
            .iter_mut()
            .map(|s| Operand::contiguous(s.as_mut_ptr()))
            .collect(),
    )
}

/// One plain update step (no prologue) of `tensors`.
fn step<T: Real, R: Rule<T>>(rule: &R, tensors: &[Tensor<T>]) {
    run(rule, tensors, &Prologue::none(), Mode::Update);
}

/// Keras's Adam step on one element, in Keras's order.
fn adam_ref(p: &mut f32, g: f32, m: &mut f32, v: &mut f32, t: u64) {
    let (lr, b1, b2, eps) = (0.01f32, 0.9f64, 0.999f64, 1e-7f32);
    let tt = t as f32 + 1.0;
    let alpha = lr * (1.0 - (b2 as f32).powf(tt)).sqrt() / (1.0 - (b1 as f32).powf(tt));
    *m += (g - *m) * ((1.0 - b1) as f32);
    *v += (g * g - *v) * ((1.0 - b2) as f32);
    *p -= (*m * alpha) / (v.sqrt() + eps);
}

fn lengths() -> Vec<usize> {
    let mut v: Vec<usize> = (0..=70).collect();
    v.extend([
        511,
        512,
        513,
        1000,
        CHUNK - 1,
        CHUNK,
        CHUNK + 1,
        2 * CHUNK + 5,
        INLINE_BELOW + 7,
    ]);
    v
}

#[test]
fn adam_matches_scalar_loop_bitwise_for_every_length() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for n in lengths() {
        let (mut p, mut g) = (uniforms(&mut rng, n), uniforms(&mut rng, n));
        let (mut m, mut v) = (vec![0.0f32; n], vec![0.0f32; n]);
        let (mut p2, mut m2, mut v2) = (p.clone(), m.clone(), v.clone());
        for iterations in 0..3u64 {
            let t = tensor(&mut p, &mut g, &mut [&mut m, &mut v]);
            step(
                &adam::<f32>(0.01, 0.9, 0.999, 1e-7, iterations, false),
                &[t],
            );
            for i in 0..n {
                adam_ref(&mut p2[i], g[i], &mut m2[i], &mut v2[i], iterations);
            }
        }
        assert_eq!(p, p2, "params, n = {n}");
        assert_eq!(m, m2, "momentums, n = {n}");
        assert_eq!(v, v2, "velocities, n = {n}");
    }
}

#[test]
fn many_tensors_of_mixed_sizes_in_one_call() {
    let mut rng = Rng(7);
    let sizes = [0usize, 1, 3, 8, 17, 1000, CHUNK + 3, 5, 2 * CHUNK];
    let mut ps: Vec<Vec<f32>> = sizes.iter().map(|&n| uniforms(&mut rng, n)).collect();
    let mut gs: Vec<Vec<f32>> = sizes.iter().map(|&n| uniforms(&mut rng, n)).collect();
    let mut ms: Vec<Vec<f32>> = sizes.iter().map(|&n| uniforms(&mut rng, n)).collect();
    let want: Vec<Vec<f32>> = ps
        .iter()
        .zip(&gs)
        .zip(&ms)
        .map(|((p, g), m)| {
            p.iter()
                .zip(g)
                .zip(m)
                .map(|((&p, &g), &m)| {
                    let m = m * 0.9f32 - g * 0.1f32;
                    p + (m * 0.9f32 - g * 0.1f32)
                })
                .collect()
        })
        .collect();
    let tensors: Vec<Tensor<f32>> = ps
        .iter_mut()
        .zip(gs.iter_mut())
        .zip(ms.iter_mut())
        .map(|((p, g), m)| tensor(p, g, &mut [m]))
        .collect();
    step(&sgd::<f32>(0.1, 0.9, true), &tensors);
    assert_eq!(ps, want);
}

#[test]
fn strided_parameter_is_updated_in_place() {
    // The parameter is every other element of a buffer; the odd elements must not change.
    let mut rng = Rng(11);
    for n in [1usize, 7, 513, 3000] {
        let mut buf = uniforms(&mut rng, 2 * n);
        let orig = buf.clone();
        let mut g = uniforms(&mut rng, n);
        let param = Operand {
            ptr: buf.as_mut_ptr(),
            strides: Some(vec![2].into()),
        };
        let grad = Grad::Same(Operand::contiguous(g.as_mut_ptr()));
        step(
            &sgd::<f32>(0.5, 0.0, false),
            &[tensor_of(&[n], param, grad, vec![])],
        );
        for i in 0..n {
            assert_eq!(buf[2 * i], orig[2 * i] - g[i] * 0.5f32);
            assert_eq!(buf[2 * i + 1], orig[2 * i + 1]);
        }
    }
}

#[test]
fn a_gradient_of_the_other_dtype_is_rounded_as_it_is_read() {
    // f64 gradients of an f32 parameter, contiguous and every-third-element strided, give
    // exactly the result of the gradients rounded to f32 first (NumPy's astype).
    let mut rng = Rng(21);
    for n in [1usize, 7, 513, 3 * CHUNK + 5] {
        let g64: Vec<f64> = (0..3 * n)
            .map(|i| f64::from(uniform(&mut rng)) * (1.0 + 1e-9 * i as f64))
            .collect();
        let g_contiguous: Vec<f64> = g64[..n].to_vec();
        let start = uniforms(&mut rng, n);
        for strided in [false, true] {
            let mut g = if strided {
                g64.clone()
            } else {
                g_contiguous.clone()
            };
            let rounded: Vec<f32> = (0..n)
                .map(|i| g[if strided { 3 * i } else { i }] as f32)
                .collect();
            let mut p = start.clone();
            let mut m = vec![0.25f32; n];
            let grad = Grad::Cast(Operand {
                ptr: g.as_mut_ptr(),
                strides: strided.then(|| vec![3].into()),
            });
            let t = tensor_of(
                &[n],
                Operand::contiguous(p.as_mut_ptr()),
                grad,
                vec![Operand::contiguous(m.as_mut_ptr())],
            );
            step(&sgd::<f32>(0.1, 0.9, false), &[t]);
            for i in 0..n {
                let m_want = 0.25f32 * 0.9f32 - rounded[i] * 0.1f32;
                assert_eq!(m[i], m_want, "n = {n}, strided = {strided}, i = {i}");
                assert_eq!(p[i], start[i] + m_want);
            }
        }
    }
}

#[test]
fn transposed_operands_meet_by_logical_index() {
    // Parameter: a 3x4 C array seen transposed (shape 4x3, strides 1, 4); gradient: C order.
    let mut p: Vec<f64> = (0..12).map(f64::from).collect();
    let mut g: Vec<f64> = (0..12).map(|i| f64::from(i) * 10.0).collect();
    let param = Operand {
        ptr: p.as_mut_ptr(),
        strides: Some(vec![1, 4].into()),
    };
    let grad = Grad::Same(Operand::contiguous(g.as_mut_ptr()));
    step(
        &sgd::<f64>(1.0, 0.0, false),
        &[tensor_of(&[4, 3], param, grad, vec![])],
    );
    for r in 0..4 {
        for c in 0..3 {
            // Logical element (r, c) of the transposed view lives at c * 4 + r.
            let want = (c * 4 + r) as f64 - ((r * 3 + c) as f64 * 10.0);
            assert_eq!(p[c * 4 + r], want);
        }
    }
}

#[test]
fn fused_prologue_matches_keras_order() {
    let mut rng = Rng(3);
    let n = 2 * CHUNK + 77;
    let mut p = uniforms(&mut rng, n);
    let mut g: Vec<f32> = uniforms(&mut rng, n).iter().map(|x| x * 100.0).collect();
    let mut avg = uniforms(&mut rng, n);
    let (p0, avg0) = (p.clone(), avg.clone());
    let (ls, c, wd, lr, mu) = (4.0f32, 0.5f32, 0.01f32, 0.1f32, 0.9f32);
    let mut t = tensor(&mut p, &mut g, &mut []);
    t.average = Some(Operand::contiguous(avg.as_mut_ptr()));
    let pro = Prologue {
        loss_scale: Some(ls),
        accumulation_steps: None,
        clip: Clip::Norm(c),
        weight_decay: Some((wd, lr)),
        ema: Some((mu, false)),
        lazy: false,
    };
    run(
        &sgd::<f32>(f64::from(lr), 0.0, false),
        &[t],
        &pro,
        Mode::Update,
    );
    let unscaled: Vec<f32> = g.iter().map(|x| x / ls).collect();
    let norm = (unscaled
        .iter()
        .map(|&x| f64::from(x) * f64::from(x))
        .sum::<f64>() as f32)
        .sqrt();
    let den = norm.max(c);
    for i in 0..n {
        let gi = (unscaled[i] * c) / den;
        let w = p0[i] - p0[i] * wd * lr;
        let w = w - gi * lr;
        let a = mu * avg0[i] + (1.0 - mu) * w;
        assert_eq!(p[i], w, "param {i}");
        assert_eq!(avg[i], a, "average {i}");
    }
}

#[test]
fn accumulation_then_update() {
    let n = 1000;
    let mut rng = Rng(5);
    let mut p = uniforms(&mut rng, n);
    let p0 = p.clone();
    let mut acc = vec![0.0f32; n];
    let g1 = uniforms(&mut rng, n);
    let g2 = uniforms(&mut rng, n);
    let steps = 2.0f32;
    let mut g = g1.clone();
    let mut t = tensor(&mut p, &mut g, &mut []);
    t.accumulator = Some(Operand::contiguous(acc.as_mut_ptr()));
    let pro = Prologue {
        accumulation_steps: Some(steps),
        ..Prologue::none()
    };
    let sgd = sgd::<f32>(1.0, 0.0, false);
    run(&sgd, &[t], &pro, Mode::AccumulateOnly);
    assert_eq!(p, p0);
    assert_eq!(acc, g1);
    let mut g = g2.clone();
    let mut t = tensor(&mut p, &mut g, &mut []);
    t.accumulator = Some(Operand::contiguous(acc.as_mut_ptr()));
    run(&sgd, &[t], &pro, Mode::Update);
    for i in 0..n {
        assert_eq!(p[i], p0[i] - (g2[i] + g1[i]) / steps);
    }
    assert!(acc.iter().all(|&x| x == 0.0));
}

fn global_clip_step(level: Option<simd::Level>, threads: usize) -> (Vec<f32>, Vec<f32>) {
    pool::set_num_threads(threads);
    simd::set(level).unwrap();
    let mut rng = Rng(99);
    // More than `COLD_PARALLEL_FROM` elements: the pool runs the call even when parked.
    let sizes = [3 * CHUNK + 11, 17, 600_000];
    let mut ps: Vec<Vec<f32>> = sizes.iter().map(|&n| uniforms(&mut rng, n)).collect();
    let mut gs: Vec<Vec<f32>> = sizes.iter().map(|&n| uniforms(&mut rng, n)).collect();
    let mut ms: Vec<Vec<f32>> = sizes.iter().map(|&n| vec![0.0; n]).collect();
    let mut vs: Vec<Vec<f32>> = sizes.iter().map(|&n| vec![0.0; n]).collect();
    let tensors: Vec<Tensor<f32>> = ps
        .iter_mut()
        .zip(gs.iter_mut())
        .zip(ms.iter_mut().zip(vs.iter_mut()))
        .map(|((p, g), (m, v))| tensor(p, g, &mut [m, v]))
        .collect();
    let pro = Prologue {
        clip: Clip::GlobalNorm(1.0, 1.0),
        ..Prologue::none()
    };
    run(
        &adam::<f32>(0.01, 0.9, 0.999, 1e-7, 0, false),
        &tensors,
        &pro,
        Mode::Update,
    );
    (ps.concat(), ms.concat())
}

#[test]
fn results_do_not_depend_on_threads_or_simd_level() {
    let _guard = GLOBAL.lock().unwrap();
    let base = global_clip_step(Some(simd::Level::Baseline), 1);
    let best = simd::detected();
    for threads in [1, 2, 3] {
        for level in [
            simd::Level::Baseline,
            simd::Level::Avx2,
            simd::Level::Avx512,
        ] {
            if level as u8 <= best as u8 {
                assert_eq!(
                    global_clip_step(Some(level), threads),
                    base,
                    "{level:?}, {threads} threads"
                );
            }
        }
    }
    simd::set(None).unwrap();
    pool::set_num_threads(2);
}

#[test]
fn every_part_runs_once_and_the_caller_and_a_worker_share_them() {
    let _guard = GLOBAL.lock().unwrap();
    pool::set_num_threads(2);
    let runs: Vec<AtomicUsize> = (0..16).map(|_| AtomicUsize::new(0)).collect();
    let threads = Mutex::new(HashSet::new());
    pool::run_parts(runs.len(), |i| {
        // Long enough parts that the worker wakes up before the caller has claimed them all.
        std::thread::sleep(std::time::Duration::from_millis(2));
        runs[i].fetch_add(1, Ordering::Relaxed);
        threads.lock().unwrap().insert(std::thread::current().id());
    });
    assert!(runs.iter().all(|r| r.load(Ordering::Relaxed) == 1));
    assert_eq!(threads.lock().unwrap().len(), 2);
}

/// A row-sparse gradient of a `rows x cols` table: `n` entries with repeated rows, and its
/// dense scatter (summed in order of appearance from zero, as `np.add.at` on zeros).
fn sparse_gradient(
    rng: &mut Rng,
    rows: usize,
    cols: usize,
    n: usize,
) -> (Vec<usize>, Vec<f32>, Vec<f32>) {
    let indices: Vec<usize> = (0..n)
        .map(|k| {
            // Every fourth entry repeats an earlier row.
            if k % 4 == 3 {
                (rng.bits() as usize) % k
            } else {
                (rng.bits() as usize) % rows
            }
        })
        .collect();
    let indices: Vec<usize> = indices
        .iter()
        .enumerate()
        .map(|(k, &r)| if k % 4 == 3 { indices[r] } else { r })
        .collect();
    let values = uniforms(rng, n * cols);
    let mut dense = vec![0.0f32; rows * cols];
    for (k, &r) in indices.iter().enumerate() {
        for j in 0..cols {
            dense[r * cols + j] += values[k * cols + j];
        }
    }
    (indices, values, dense)
}

fn rows_of(indices: &[usize], values: &[f32], cols: usize) -> Grad<f32> {
    let mut values = values.to_vec();
    let op = Operand::contiguous(values.as_mut_ptr());
    // SAFETY: `values` holds `indices.len() * cols` elements and outlives the call.
    Grad::Rows(unsafe { Rows::summed(indices, cols, &op, &[indices.len(), cols], |x| x) })
}

/// A table's parameters and first slot after a step.
type Stepped = (Vec<f32>, Vec<f32>);

/// One step of `rule` on a table with the row-sparse gradient and one on a copy with its
/// dense scatter; returns (sparse, dense) parameters and first slots.
fn sparse_and_dense_step<R: Rule<f32>>(
    rule: &R,
    pro: &Prologue<f32>,
    nslots: usize,
    threads: usize,
    level: simd::Level,
) -> (Stepped, Stepped) {
    pool::set_num_threads(threads);
    simd::set(Some(level)).unwrap();
    let (rows, cols) = (40_000, 33);
    let mut rng = Rng(7);
    let p0 = uniforms(&mut rng, rows * cols);
    let s0 = uniforms(&mut rng, rows * cols);
    let (indices, values, mut dense) = sparse_gradient(&mut rng, rows, cols, 700);
    let mut out = Vec::new();
    for sparse in [true, false] {
        let mut p = p0.clone();
        let mut slots: Vec<Vec<f32>> = (0..nslots).map(|_| s0.clone()).collect();
        let grad = if sparse {
            rows_of(&indices, &values, cols)
        } else {
            Grad::Same(Operand::contiguous(dense.as_mut_ptr()))
        };
        let t = tensor_of(
            &[rows, cols],
            Operand::contiguous(p.as_mut_ptr()),
            grad,
            slots
                .iter_mut()
                .map(|s| Operand::contiguous(s.as_mut_ptr()))
                .collect(),
        );
        run(rule, &[t], pro, Mode::Update);
        out.push((p, slots.into_iter().next().unwrap_or_default()));
    }
    let dense_result = out.pop().unwrap();
    (out.pop().unwrap(), dense_result)
}

/// The bits of a step's results (NaN compares equal to itself).
fn bits(x: &Stepped) -> (Vec<u32>, Vec<u32>) {
    (
        x.0.iter().map(|v| v.to_bits()).collect(),
        x.1.iter().map(|v| v.to_bits()).collect(),
    )
}

#[test]
fn a_row_sparse_gradient_steps_as_its_dense_scatter_for_any_threads_or_simd_level() {
    let _guard = GLOBAL.lock().unwrap();
    let best = simd::detected();
    let clips = [
        Clip::None,
        Clip::Norm(0.5),
        Clip::GlobalNorm(0.5, 2.0),
        Clip::Value(0.25),
    ];
    let mut first: Option<Vec<(Vec<u32>, Vec<u32>)>> = None;
    for threads in [1, 2, 3] {
        for level in [
            simd::Level::Baseline,
            simd::Level::Avx2,
            simd::Level::Avx512,
        ] {
            if level as u8 > best as u8 {
                continue;
            }
            let mut results = Vec::new();
            for clip in clips {
                let pro = Prologue {
                    clip,
                    loss_scale: Some(2.0),
                    ..Prologue::none()
                };
                // Plain SGD runs over the rows only; SGD with momentum and Adam over the
                // whole table.
                let (s, d) = sparse_and_dense_step(&sgd(0.1, 0.0, false), &pro, 0, threads, level);
                assert!(
                    bits(&s) == bits(&d),
                    "sgd {clip:?} {threads} threads {level:?}"
                );
                results.push(bits(&s));
                let (s, d) = sparse_and_dense_step(&sgd(0.1, 0.9, true), &pro, 1, threads, level);
                assert!(
                    bits(&s) == bits(&d),
                    "sgd momentum {clip:?} {threads} threads {level:?}"
                );
                results.push(bits(&s));
                let rule = adam(0.01, 0.9, 0.999, 1e-7, 3, false);
                let (s, d) = sparse_and_dense_step(&rule, &pro, 2, threads, level);
                assert!(
                    bits(&s) == bits(&d),
                    "adam {clip:?} {threads} threads {level:?}"
                );
                results.push(bits(&s));
            }
            match &first {
                None => first = Some(results),
                Some(f) => assert!(*f == results, "{threads} threads {level:?}"),
            }
        }
    }
    simd::set(None).unwrap();
    pool::set_num_threads(2);
}

#[test]
fn a_lazy_step_updates_the_given_rows_as_a_dense_step_of_those_rows() {
    let _guard = GLOBAL.lock().unwrap();
    let (rows, cols) = (5_000, 70);
    let mut rng = Rng(11);
    let p0 = uniforms(&mut rng, rows * cols);
    let (indices, values, dense) = sparse_gradient(&mut rng, rows, cols, 300);
    let rule = adam(0.01, 0.9, 0.999, 1e-7, 4, false);
    let pro = Prologue {
        lazy: true,
        weight_decay: Some((0.1, 0.01)),
        ..Prologue::none()
    };
    let (mut p, mut m, mut v) = (
        p0.clone(),
        vec![0.5f32; rows * cols],
        vec![0.25f32; rows * cols],
    );
    let t = tensor_of(
        &[rows, cols],
        Operand::contiguous(p.as_mut_ptr()),
        rows_of(&indices, &values, cols),
        vec![
            Operand::contiguous(m.as_mut_ptr()),
            Operand::contiguous(v.as_mut_ptr()),
        ],
    );
    run(&rule, &[t], &pro, Mode::Update);
    let touched: HashSet<usize> = indices.iter().copied().collect();
    for r in 0..rows {
        let range = r * cols..(r + 1) * cols;
        if !touched.contains(&r) {
            assert_eq!(p[range.clone()], p0[range.clone()], "row {r}");
            assert!(m[range.clone()].iter().all(|&x| x == 0.5), "row {r}");
            assert!(v[range].iter().all(|&x| x == 0.25), "row {r}");
            continue;
        }
        // The dense step of this row alone, with the row's summed gradient.
        let (mut q, mut mq, mut vq) = (
            p0[range.clone()].to_vec(),
            vec![0.5f32; cols],
            vec![0.25f32; cols],
        );
        let mut g = dense[range.clone()].to_vec();
        let t = tensor(&mut q, &mut g, &mut [&mut mq, &mut vq]);
        run(
            &rule,
            &[t],
            &Prologue {
                weight_decay: Some((0.1, 0.01)),
                ..Prologue::none()
            },
            Mode::Update,
        );
        assert_eq!(p[range.clone()], q[..], "row {r}");
        assert_eq!(m[range.clone()], mq[..], "row {r}");
        assert_eq!(v[range], vq[..], "row {r}");
    }
}
