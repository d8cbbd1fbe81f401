//! Turning Python sequences of arrays into `kernels::Tensor`s.

use crate::error::Error;
use crate::kernels::layout::{is_non_overlapping, Operand};
use crate::kernels::{Real, Tensor};
use numpy::{
    BorrowError, Element, PyArrayDescrMethods, PyArrayDyn, PyArrayMethods, PyReadonlyArrayDyn,
    PyReadwriteArrayDyn, PyUntypedArray, PyUntypedArrayMethods,
};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyList, PySequence, PyString, PyTuple};

/// Arrays of a call, borrowed for as long as the kernels may touch them.
pub struct Borrows<'py, T: Element> {
    rw: Vec<PyReadwriteArrayDyn<'py, T>>,
    ro: Vec<PyReadonlyArrayDyn<'py, T>>,
}

impl<'py, T: Element> Borrows<'py, T> {
    pub fn new() -> Self {
        Borrows {
            rw: Vec::new(),
            ro: Vec::new(),
        }
    }
}

/// Names the variables in messages: by the caller's names when given, else by index.
pub struct Names<'a, 'py>(pub Option<&'a Bound<'py, PyAny>>);

impl Names<'_, '_> {
    #[cold]
    pub fn of(&self, i: usize) -> String {
        if let Some(names) = self.0 {
            if let Ok(item) = names.get_item(i) {
                if let Ok(s) = item.cast::<PyString>() {
                    return format!("'{s}'");
                }
            }
        }
        format!("at index {i}")
    }
}

/// A Python list or tuple (or other sequence) as a vector of its items.
pub fn items<'py>(obj: &Bound<'py, PyAny>, what: &str) -> PyResult<Vec<Bound<'py, PyAny>>> {
    if let Ok(list) = obj.cast::<PyList>() {
        return Ok(list.iter().collect());
    }
    if let Ok(tuple) = obj.cast::<PyTuple>() {
        return Ok(tuple.iter().collect());
    }
    if obj.is_instance_of::<PyString>() {
        return Err(Error::type_error(format!("`{what}` must be a list of arrays, got a string")).into());
    }
    let seq = obj.cast::<PySequence>().map_err(|_| {
        Error::type_error(format!(
            "`{what}` must be a list of arrays, got {}",
            type_name(obj)
        ))
    })?;
    let n = seq.len()?;
    let mut v = Vec::with_capacity(n);
    for i in 0..n {
        v.push(seq.get_item(i)?);
    }
    Ok(v)
}

#[cold]
fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map_or_else(|_| "an unknown type".to_owned(), |n| n.to_string())
}

/// The dtype of a call's group: that of the first parameter.
pub enum Dtype {
    F32,
    F64,
}

pub fn group_dtype(first: &Bound<'_, PyAny>, names: &Names<'_, '_>) -> PyResult<Dtype> {
    if first.cast::<PyArrayDyn<f32>>().is_ok() {
        return Ok(Dtype::F32);
    }
    if first.cast::<PyArrayDyn<f64>>().is_ok() {
        return Ok(Dtype::F64);
    }
    Err(not_float_param(first, names, 0).into())
}

#[cold]
fn not_float_param(obj: &Bound<'_, PyAny>, names: &Names<'_, '_>, i: usize) -> Error {
    match obj.cast::<PyUntypedArray>() {
        Ok(arr) => Error::type_error(format!(
            "parameter {} has dtype {}; parameters must be float32 or float64 arrays",
            names.of(i),
            arr.dtype()
        )),
        Err(_) => Error::type_error(format!(
            "parameter {} must be a numpy.ndarray (updated in place), got {}",
            names.of(i),
            type_name(obj)
        )),
    }
}

#[cold]
fn borrow_error(e: &BorrowError, what: &str) -> PyErr {
    match e {
        BorrowError::NotWriteable => Error::value_error(format!(
            "{what} is read-only; parameters and optimizer state are updated in place"
        )),
        _ => Error::value_error(format!(
            "{what} shares memory with another array of this call (the same array given twice, \
             overlapping views, or a gradient that aliases a parameter or a slot)"
        )),
    }
    .into()
}

/// Geometry of one borrowed array.
struct Raw<'a, T> {
    ptr: *mut T,
    shape: &'a [usize],
    strides: &'a [isize],
    c: bool,
    f: bool,
}

fn raw<'a, T: Element>(arr: &'a Bound<'_, PyArrayDyn<T>>) -> Raw<'a, T> {
    Raw {
        ptr: arr.data(),
        shape: arr.shape(),
        strides: arr.strides(),
        c: arr.is_c_contiguous(),
        f: arr.is_fortran_contiguous(),
    }
}

/// Checks alignment and (for writable operands) self-overlap, and returns the strides in
/// elements of an operand that is not contiguous (`None` for a contiguous one).
fn element_strides<T>(
    r: &Raw<'_, T>,
    writable: bool,
    what: &dyn Fn() -> String,
) -> PyResult<Option<Box<[isize]>>> {
    let size = std::mem::size_of::<T>() as isize;
    if (r.ptr as usize) % std::mem::align_of::<T>() != 0 {
        return Err(Error::value_error(format!("{} is not aligned in memory", what())).into());
    }
    if r.c {
        return Ok(None);
    }
    let mut out = Vec::with_capacity(r.strides.len());
    for (&s, &n) in r.strides.iter().zip(r.shape) {
        if s % size != 0 && n > 1 {
            return Err(Error::value_error(format!(
                "{} has strides that are not a multiple of its item size",
                what()
            ))
            .into());
        }
        out.push(s / size);
    }
    if writable && !r.c && !r.f && !is_non_overlapping(r.shape, &out) {
        return Err(Error::value_error(format!(
            "{} overlaps itself (a view with zero or overlapping strides) and cannot be updated \
             in place",
            what()
        ))
        .into());
    }
    Ok(Some(out.into_boxed_slice()))
}

/// The arrays of one tensor before layout is decided.
struct Group<'a, T> {
    param: Raw<'a, T>,
    grad: Option<Raw<'a, T>>,
    slots: Vec<Raw<'a, T>>,
    accumulator: Option<Raw<'a, T>>,
    average: Option<Raw<'a, T>>,
}

static ASARRAY: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// A gradient as an array of `T`: as is when it already is one, else converted the way
/// `numpy.asarray(g, dtype=T)` would, for real (float, integer) data only.
pub fn gradient_array<'py, T: Element + Real>(
    py: Python<'py>,
    g: &Bound<'py, PyAny>,
    names: &Names<'_, 'py>,
    i: usize,
) -> PyResult<Bound<'py, PyArrayDyn<T>>> {
    if let Ok(a) = g.cast::<PyArrayDyn<T>>() {
        return Ok(a.clone());
    }
    if g.is_none() {
        return Err(Error::type_error(format!("gradient {} is None", names.of(i))).into());
    }
    let asarray = ASARRAY.get_or_try_init(py, || -> PyResult<Py<PyAny>> {
        Ok(py.import("numpy")?.getattr("asarray")?.unbind())
    })?;
    let arr = match g.cast::<PyUntypedArray>() {
        Ok(a) => a.clone(),
        Err(_) => asarray
            .bind(py)
            .call1((g,))
            .map_err(|e| {
                Error::type_error(format!(
                    "gradient {} cannot be converted to an array: {e}",
                    names.of(i)
                ))
            })?
            .cast_into::<PyUntypedArray>()
            .map_err(|_| Error::type_error(format!("gradient {} is not array-like", names.of(i))))?,
    };
    let kind = arr.dtype().kind();
    if !matches!(kind, b'f' | b'i' | b'u') {
        return Err(Error::type_error(format!(
            "gradient {} has dtype {}, which cannot be cast safely to {}",
            names.of(i),
            arr.dtype(),
            T::NAME
        ))
        .into());
    }
    let converted = asarray
        .bind(py)
        .call1((arr, numpy::dtype::<T>(py)))?
        .cast_into::<PyArrayDyn<T>>()
        .map_err(|e| Error::type_error(e.to_string()))?;
    Ok(converted)
}

/// The state lists of a call besides the parameters and gradients, each aligned with them.
pub struct State<'a, 'py> {
    pub slots: Vec<(&'static str, Vec<Bound<'py, PyAny>>)>,
    pub accumulators: Option<&'a [Bound<'py, PyAny>]>,
    pub averages: Option<&'a [Bound<'py, PyAny>]>,
    pub decay_mask: Option<&'a [bool]>,
}

/// Validates every array of a call and builds the kernels' view of it. Nothing is written.
#[allow(clippy::too_many_lines)]
pub fn tensors<'py, T: Element + Real>(
    py: Python<'py>,
    params: &[Bound<'py, PyAny>],
    grads: Option<&[Bound<'py, PyAny>]>,
    state: &State<'_, 'py>,
    names: &Names<'_, 'py>,
    borrows: &mut Borrows<'py, T>,
) -> PyResult<Vec<Tensor<T>>> {
    let n = params.len();
    let check_len = |len: usize, what: &str| -> PyResult<()> {
        if len == n {
            Ok(())
        } else {
            Err(Error::value_error(format!(
                "got {n} parameters but {len} {what}; the lists must be aligned"
            ))
            .into())
        }
    };
    if let Some(g) = grads {
        check_len(g.len(), "gradients")?;
    }
    for (what, list) in &state.slots {
        check_len(list.len(), what)?;
    }
    if let Some(a) = state.accumulators {
        check_len(a.len(), "accumulators")?;
    }
    if let Some(a) = state.averages {
        check_len(a.len(), "averages")?;
    }
    if let Some(m) = state.decay_mask {
        check_len(m.len(), "weight-decay mask entries")?;
    }

    // Typed handles first (no borrows yet), so type errors come before aliasing errors.
    let mut p_arr = Vec::with_capacity(n);
    for (i, p) in params.iter().enumerate() {
        match p.cast::<PyArrayDyn<T>>() {
            Ok(a) => p_arr.push(a.clone()),
            Err(_) => {
                if p.cast::<PyArrayDyn<f32>>().is_ok() || p.cast::<PyArrayDyn<f64>>().is_ok() {
                    return Err(Error::type_error(format!(
                        "parameter {} is not {}: one call takes parameters of one dtype",
                        names.of(i),
                        T::NAME
                    ))
                    .into());
                }
                return Err(not_float_param(p, names, i).into());
            }
        }
    }
    let state_array = |obj: &Bound<'py, PyAny>, what: &str, i: usize| -> PyResult<Bound<'py, PyArrayDyn<T>>> {
        let a = obj.cast::<PyArrayDyn<T>>().map_err(|_| {
            Error::type_error(format!(
                "{what} of parameter {} must be a {} numpy.ndarray",
                names.of(i),
                T::NAME
            ))
        })?;
        if a.shape() != p_arr[i].shape() {
            return Err(Error::value_error(format!(
                "{what} of parameter {} has shape {:?} but the parameter has shape {:?}",
                names.of(i),
                a.shape(),
                p_arr[i].shape()
            ))
            .into());
        }
        Ok(a.clone())
    };
    let mut slot_arr: Vec<Vec<Bound<'py, PyArrayDyn<T>>>> = Vec::with_capacity(state.slots.len());
    for (what, list) in &state.slots {
        let mut v = Vec::with_capacity(n);
        for (i, s) in list.iter().enumerate() {
            v.push(state_array(s, what, i)?);
        }
        slot_arr.push(v);
    }
    let mut acc_arr = Vec::new();
    if let Some(list) = state.accumulators {
        for (i, s) in list.iter().enumerate() {
            acc_arr.push(state_array(s, "gradient accumulator", i)?);
        }
    }
    let mut avg_arr = Vec::new();
    if let Some(list) = state.averages {
        for (i, s) in list.iter().enumerate() {
            avg_arr.push(state_array(s, "moving average", i)?);
        }
    }
    let mut g_arr = Vec::new();
    if let Some(gs) = grads {
        for (i, g) in gs.iter().enumerate() {
            let a = gradient_array::<T>(py, g, names, i)?;
            if a.shape() != p_arr[i].shape() {
                return Err(Error::value_error(format!(
                    "gradient {} has shape {:?} but the parameter has shape {:?}",
                    names.of(i),
                    a.shape(),
                    p_arr[i].shape()
                ))
                .into());
            }
            g_arr.push(a);
        }
    }

    // Borrows: writable state first, then gradients read-only; any overlap fails here.
    for (i, a) in p_arr.iter().enumerate() {
        let b = a
            .try_readwrite()
            .map_err(|e| borrow_error(&e, &format!("parameter {}", names.of(i))))?;
        borrows.rw.push(b);
    }
    for ((what, _), list) in state.slots.iter().zip(&slot_arr) {
        for (i, a) in list.iter().enumerate() {
            let b = a
                .try_readwrite()
                .map_err(|e| borrow_error(&e, &format!("{what} of parameter {}", names.of(i))))?;
            borrows.rw.push(b);
        }
    }
    for (what, list) in [("gradient accumulator", &acc_arr), ("moving average", &avg_arr)] {
        for (i, a) in list.iter().enumerate() {
            let b = a
                .try_readwrite()
                .map_err(|e| borrow_error(&e, &format!("{what} of parameter {}", names.of(i))))?;
            borrows.rw.push(b);
        }
    }
    for (i, a) in g_arr.iter().enumerate() {
        let b = a
            .try_readonly()
            .map_err(|e| borrow_error(&e, &format!("gradient {}", names.of(i))))?;
        borrows.ro.push(b);
    }

    // Layout.
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let group = Group {
            param: raw(&p_arr[i]),
            grad: g_arr.get(i).map(|a| raw(a)),
            slots: slot_arr.iter().map(|l| raw(&l[i])).collect(),
            accumulator: acc_arr.get(i).map(|a| raw(a)),
            average: avg_arr.get(i).map(|a| raw(a)),
        };
        let decay = state.decay_mask.is_none_or(|m| m[i]);
        out.push(tensor(&group, decay, &|| format!("parameter {}", names.of(i)))?);
    }
    Ok(out)
}

fn tensor<T: Real>(g: &Group<'_, T>, decay: bool, name: &dyn Fn() -> String) -> PyResult<Tensor<T>> {
    let all = || {
        std::iter::once(&g.param)
            .chain(g.grad.iter())
            .chain(g.slots.iter())
            .chain(g.accumulator.iter())
            .chain(g.average.iter())
    };
    // Walk memory order when every operand is laid out alike, else logical C order.
    let flat = all().all(|r| r.c) || all().all(|r| r.f);
    let operand = |r: &Raw<'_, T>, writable: bool, what: &str| -> PyResult<Operand<T>> {
        let strides = element_strides(r, writable, &|| format!("{what} of {}", name()))?;
        Ok(Operand {
            ptr: r.ptr,
            strides: if flat { None } else { strides },
        })
    };
    let len = g.param.shape.iter().product();
    Ok(Tensor {
        len,
        shape: g.param.shape.into(),
        param: operand(&g.param, true, "the array")?,
        grad: g.grad.as_ref().map(|r| operand(r, false, "the gradient")).transpose()?,
        slots: g
            .slots
            .iter()
            .map(|r| operand(r, true, "a slot"))
            .collect::<PyResult<_>>()?,
        accumulator: g
            .accumulator
            .as_ref()
            .map(|r| operand(r, true, "the accumulator"))
            .transpose()?,
        average: g
            .average
            .as_ref()
            .map(|r| operand(r, true, "the moving average"))
            .transpose()?,
        decay,
    })
}
