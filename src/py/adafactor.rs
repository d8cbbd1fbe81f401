//! The `adafactor` binding: validates a whole call, then runs `kernels::adafactor::step`, with
//! the GIL released for big calls.
//!
//! Everything is checked before anything is written: the parameters, gradients and velocities
//! through `prepare::tensors` (dtype, shapes, writability, alignment, aliasing), then C order
//! for all of them (the kernel walks rows and columns of the memory as laid out; the Python
//! class keeps strided variables on its NumPy path), then the `r` and `c` slots of the
//! variables of rank >= 2 (dtype, shape, writability, C order), and last one aliasing sweep
//! over every array of the call. Gradients of another real dtype or layout are converted to
//! C-contiguous arrays of the parameters' dtype first.

use super::args;
use super::prepare::{self, Dtype, Names, State};
use crate::error::Error;
use crate::kernels::adafactor::{step, Factors, Scalars, Variable};
use crate::kernels::Real;
use numpy::npyffi::flags;
use numpy::{Element, PyArrayDyn, PyArrayMethods, PyUntypedArray, PyUntypedArrayMethods};
use pyo3::prelude::*;

/// Adafactor's update for every variable of a dtype group; see `_native.pyi`.
#[pyfunction]
#[pyo3(signature = (params, grads, r, c, velocities, rho_t, beta_2_t, epsilon_1, epsilon_2,
    clip_threshold, names=None))]
#[allow(clippy::too_many_arguments)]
pub fn adafactor<'py>(
    py: Python<'py>,
    params: &Bound<'py, PyAny>,
    grads: &Bound<'py, PyAny>,
    r: &Bound<'py, PyAny>,
    c: &Bound<'py, PyAny>,
    velocities: &Bound<'py, PyAny>,
    #[pyo3(from_py_with = args::real)] rho_t: f64,
    #[pyo3(from_py_with = args::real)] beta_2_t: f64,
    #[pyo3(from_py_with = args::real)] epsilon_1: f64,
    #[pyo3(from_py_with = args::real)] epsilon_2: f64,
    #[pyo3(from_py_with = args::real)] clip_threshold: f64,
    names: Option<&Bound<'py, PyAny>>,
) -> PyResult<()> {
    // rho_t and beta_2_t are not checked: a NaN learning rate reaches the variables, as in
    // Keras and on the class's NumPy path.
    for (name, x) in [
        ("epsilon_1", epsilon_1),
        ("epsilon_2", epsilon_2),
        ("clip_threshold", clip_threshold),
    ] {
        args::finite(name, x)?;
    }
    let names = Names(names);
    let params = prepare::items(params, "params")?;
    let grads = prepare::items(grads, "grads")?;
    let rs = prepare::items(r, "r")?;
    let cs = prepare::items(c, "c")?;
    let vs = prepare::items(velocities, "velocities")?;
    let n = params.len();
    for (what, len) in [
        ("gradients", grads.len()),
        ("r slots", rs.len()),
        ("c slots", cs.len()),
        ("velocities", vs.len()),
    ] {
        if len != n {
            return Err(Error::value_error(format!(
                "got {n} parameters but {len} {what}; the lists must be aligned"
            ))
            .into());
        }
    }
    let Some(first) = params.first() else {
        return Ok(());
    };
    let scalars = (rho_t, beta_2_t, epsilon_1, epsilon_2, clip_threshold);
    let call = Call {
        params: &params,
        grads: &grads,
        rs: &rs,
        cs: &cs,
        vs,
        names: &names,
    };
    match prepare::group_dtype(first, &names)? {
        Dtype::F32 => call.run::<f32>(py, scalars),
        Dtype::F64 => call.run::<f64>(py, scalars),
    }
}

/// The lists of one call, aligned.
struct Call<'a, 'py> {
    params: &'a [Bound<'py, PyAny>],
    grads: &'a [Bound<'py, PyAny>],
    rs: &'a [Bound<'py, PyAny>],
    cs: &'a [Bound<'py, PyAny>],
    vs: Vec<Bound<'py, PyAny>>,
    names: &'a Names<'a, 'py>,
}

/// `(batch, rows, cols, r, c)` of a variable of rank >= 2.
type Factored<T> = (usize, usize, usize, *mut T, *mut T);

impl<'py> Call<'_, 'py> {
    fn run<T: Real + Element>(
        self,
        py: Python<'py>,
        (rho_t, beta_2_t, epsilon_1, epsilon_2, clip_threshold): (f64, f64, f64, f64, f64),
    ) -> PyResult<()> {
        let names = self.names;
        let mut grads = Vec::with_capacity(self.grads.len());
        for (i, g) in self.grads.iter().enumerate() {
            let a = prepare::gradient_array::<T>(py, g, names, i)?;
            grads.push(if a.is_c_contiguous() {
                a.into_any()
            } else {
                py.import("numpy")?
                    .getattr("ascontiguousarray")?
                    .call1((a,))?
            });
        }
        let state = State {
            slots: vec![("velocity", self.vs.clone())],
            accumulators: None,
            averages: None,
            decay_mask: None,
        };
        let mut keep = Vec::new();
        // Validation only: the kernel takes the arrays' own data pointers below.
        prepare::tensors::<T>(py, self.params, Some(&grads), &state, names, &mut keep)?;

        let mut factored: Vec<Option<Factored<T>>> = Vec::with_capacity(self.params.len());
        let mut written: Vec<Bound<'py, PyAny>> = self.params.to_vec();
        written.extend(self.vs.iter().cloned());
        for i in 0..self.params.len() {
            for (what, obj) in [("", &self.params[i]), ("velocity of ", &self.vs[i])] {
                if !obj.cast::<PyUntypedArray>()?.is_c_contiguous() {
                    return Err(Error::value_error(format!(
                        "{what}parameter {} is not C-contiguous; adafactor updates C-contiguous \
                         arrays only",
                        names.of(i)
                    ))
                    .into());
                }
            }
            let shape = self.params[i].cast::<PyUntypedArray>()?.shape().to_vec();
            let nd = shape.len();
            if nd < 2 {
                factored.push(None);
                continue;
            }
            let (rows, cols) = (shape[nd - 2], shape[nd - 1]);
            let batch = shape[..nd - 2].iter().product();
            let c_shape: Vec<usize> = shape[..nd - 2]
                .iter()
                .chain(&shape[nd - 1..])
                .copied()
                .collect();
            let r = slot::<T>(&self.rs[i], "r", &shape[..nd - 1], names, i)?;
            let c = slot::<T>(&self.cs[i], "c", &c_shape, names, i)?;
            factored.push(Some((batch, rows, cols, r, c)));
            written.push(self.rs[i].clone());
            written.push(self.cs[i].clone());
        }
        prepare::check_disjoint(&grads, &written, names)?;

        let scalars = Scalars::<T>::new(rho_t, beta_2_t, epsilon_1, epsilon_2, clip_threshold);
        let mut vars = Vec::with_capacity(self.params.len());
        let mut total = 0;
        for (i, f) in factored.iter().enumerate() {
            let (w, g, v) = (
                array::<T>(&self.params[i])?,
                array::<T>(&grads[i])?,
                array::<T>(&self.vs[i])?,
            );
            let len = w.len();
            total += len;
            // SAFETY: every array was validated above and is kept alive by this frame until
            // the step returns: C-contiguous (so `data()` is element 0 of `len` elements in
            // order), of one shape, aligned, of dtype T; the written arrays (parameter,
            // velocity, r, c) overlap no other array of the call, so the `&mut` slices are
            // exclusive; gradients (which may share memory with each other) are only read.
            let factors = f.map(|(batch, rows, cols, r, c)| unsafe {
                Factors {
                    batch,
                    rows,
                    cols,
                    r: slice_mut(r, batch * rows),
                    c: slice_mut(c, batch * cols),
                }
            });
            // SAFETY: as above.
            let (w, g, v) = unsafe {
                (
                    slice_mut(w.data(), len),
                    slice(g.data(), len),
                    slice_mut(v.data(), len),
                )
            };
            vars.push(Variable::new(w, g, v, factors).ok_or_else(|| {
                Error::value_error(format!(
                    "the slots of parameter {} do not fit its shape",
                    names.of(i)
                ))
            })?);
        }
        if total >= super::call::DETACH_FROM {
            py.detach(|| step(&mut vars, &scalars));
        } else {
            step(&mut vars, &scalars);
        }
        drop(vars);
        drop(keep);
        drop(grads);
        super::runtime::count_completed();
        Ok(())
    }
}

/// `len` elements from `ptr` to write (any pointer when `len` is 0).
///
/// # Safety
/// A non-empty range is alive, aligned, initialized and covered by no other live reference.
unsafe fn slice_mut<'a, T>(ptr: *mut T, len: usize) -> &'a mut [T] {
    if len == 0 {
        return &mut [];
    }
    // SAFETY: guaranteed by the caller.
    unsafe { std::slice::from_raw_parts_mut(ptr, len) }
}

/// `len` elements from `ptr` to read (any pointer when `len` is 0).
///
/// # Safety
/// A non-empty range is alive, aligned, initialized and written by nothing while it is used.
unsafe fn slice<'a, T>(ptr: *const T, len: usize) -> &'a [T] {
    if len == 0 {
        return &[];
    }
    // SAFETY: guaranteed by the caller.
    unsafe { std::slice::from_raw_parts(ptr, len) }
}

/// A validated array of `T`.
fn array<'a, 'py, T: Real + Element>(
    obj: &'a Bound<'py, PyAny>,
) -> PyResult<&'a Bound<'py, PyArrayDyn<T>>> {
    obj.cast::<PyArrayDyn<T>>()
        .map_err(|e| Error::type_error(e.to_string()).into())
}

/// Checks the `r` or `c` slot of parameter `i` and returns its data pointer.
fn slot<T: Real + Element>(
    obj: &Bound<'_, PyAny>,
    what: &str,
    shape: &[usize],
    names: &Names<'_, '_>,
    i: usize,
) -> PyResult<*mut T> {
    let Ok(a) = obj.cast::<PyArrayDyn<T>>() else {
        return Err(Error::type_error(format!(
            "{what} of parameter {} must be a {} numpy.ndarray of shape {}",
            names.of(i),
            T::NAME,
            prepare::shape_tuple(shape)
        ))
        .into());
    };
    if a.shape() != shape {
        return Err(Error::value_error(format!(
            "{what} of parameter {} has shape {} but must have shape {}",
            names.of(i),
            prepare::shape_tuple(a.shape()),
            prepare::shape_tuple(shape)
        ))
        .into());
    }
    // SAFETY: reads the flags of a live array.
    let f = unsafe { (*a.as_array_ptr()).flags };
    let problem = if f & flags::NPY_ARRAY_WRITEABLE == 0 {
        Some("is read-only; parameters and optimizer state are updated in place")
    } else if f & flags::NPY_ARRAY_C_CONTIGUOUS == 0 {
        Some("is not C-contiguous; adafactor updates C-contiguous arrays only")
    } else if f & flags::NPY_ARRAY_ALIGNED == 0 {
        Some("is not aligned in memory")
    } else {
        None
    };
    if let Some(problem) = problem {
        return Err(
            Error::value_error(format!("{what} of parameter {} {problem}", names.of(i))).into(),
        );
    }
    Ok(a.data())
}
