//! Turning Python sequences of arrays into `kernels::Tensor`s.
//!
//! Arrays are read straight from NumPy's array struct (data pointer, shape, strides, flags,
//! dtype number): a step touches a few arrays per tensor and this path runs for every one of
//! them, so it stays allocation-light. Aliasing is checked for the whole call at once: the
//! byte ranges of all arrays are sorted and swept, and any overlap that involves a writable
//! array (a parameter, a slot, an accumulator, an average) is refused. Gradients may share
//! memory with each other. The check is by address range, so two interleaved views of one
//! buffer (`a[::2]` and `a[1::2]`) count as overlapping: refused, never raced.
//!
//! What this does not guard against is another Python thread mutating the same arrays while
//! a call runs with the GIL released, as with NumPy's own in-place operations; the optimizer
//! classes serialize their steps.

use super::sparse;
use crate::error::Error;
use crate::kernels::layout::{is_non_overlapping, Operand};
use crate::kernels::{Grad, Real, Tensor};
use numpy::npyffi::{flags, NPY_TYPES};
use numpy::{Element, PyArrayDescrMethods, PyArrayDyn, PyUntypedArray, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyList, PySequence, PyString, PyTuple};

/// A shape as Python prints a tuple, `(5,)`, `(4, 3)`, `()`: the spelling of every shape
/// in a message, since the user wrote it in Python.
pub(crate) fn shape_tuple(shape: &[usize]) -> String {
    match shape {
        [n] => format!("({n},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Names the variables in messages: by the caller's names when given, else by index.
pub struct Names<'a, 'py>(pub Option<&'a Bound<'py, PyAny>>);

impl Names<'_, '_> {
    #[cold]
    #[must_use]
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
        return Err(
            Error::type_error(format!("`{what}` must be a list of arrays, got a string")).into(),
        );
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

/// Geometry of one array.
pub(crate) struct Raw<'a, T> {
    pub(crate) ptr: *mut T,
    pub(crate) shape: &'a [usize],
    strides: &'a [isize],
    c: bool,
    f: bool,
}

/// Checks alignment and (for writable operands) self-overlap, and returns the strides in
/// elements of an operand that is not contiguous (`None` for a contiguous one).
pub(crate) fn element_strides<T>(
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

/// A gradient array of the parameters' dtype or of the other float dtype (read with a cast).
enum GradRaw<'a, T: Real> {
    Same(Raw<'a, T>),
    Cast(Raw<'a, T::Other>),
}

impl<T: Real> GradRaw<'_, T> {
    fn shape(&self) -> &[usize] {
        match self {
            GradRaw::Same(r) => r.shape,
            GradRaw::Cast(r) => r.shape,
        }
    }

    fn c(&self) -> bool {
        match self {
            GradRaw::Same(r) => r.c,
            GradRaw::Cast(r) => r.c,
        }
    }

    fn f(&self) -> bool {
        match self {
            GradRaw::Same(r) => r.f,
            GradRaw::Cast(r) => r.f,
        }
    }

    fn span(&self, tensor: usize) -> Option<Span> {
        let role = "the gradient of parameter";
        match self {
            GradRaw::Same(r) => span(r, false, tensor, role),
            GradRaw::Cast(r) => span(r, false, tensor, role),
        }
    }
}

/// The arrays of one tensor before layout is decided.
struct Group<'a, T: Real> {
    param: Raw<'a, T>,
    grad: Option<GradRaw<'a, T>>,
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
            .map_err(|_| {
                Error::type_error(format!("gradient {} is not array-like", names.of(i)))
            })?,
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

/// The NumPy type number of `T`.
fn type_num<T: Real>() -> i32 {
    if std::mem::size_of::<T>() == 4 {
        NPY_TYPES::NPY_FLOAT as i32
    } else {
        NPY_TYPES::NPY_DOUBLE as i32
    }
}

/// One array of a call, read from NumPy's struct. Borrows from the array object.
struct View<'a, T> {
    raw: Raw<'a, T>,
    writable: bool,
}

/// The array behind `obj` if it is an ndarray of `T` in native byte order.
fn typed<'a, T: Real>(obj: &'a Bound<'_, PyAny>) -> Option<View<'a, T>> {
    let arr = obj.cast::<PyUntypedArray>().ok()?;
    let dtype = arr.dtype();
    if dtype.num() != type_num::<T>() || dtype.is_native_byteorder() == Some(false) {
        return None;
    }
    let ptr = arr.as_array_ptr();
    // SAFETY: `ptr` is the live PyArrayObject of `obj`, which outlives the view; NumPy keeps
    // shape and strides arrays of `nd` entries (a null pointer only when nd == 0).
    let (data, shape, strides, flags) = unsafe {
        let a = &*ptr;
        let nd = usize::try_from(a.nd).unwrap_or(0);
        let (shape, strides): (&[usize], &[isize]) = if nd == 0 {
            (&[], &[])
        } else {
            (
                std::slice::from_raw_parts(a.dimensions.cast::<usize>(), nd),
                std::slice::from_raw_parts(a.strides, nd),
            )
        };
        (a.data.cast::<T>(), shape, strides, a.flags)
    };
    Some(View {
        raw: Raw {
            ptr: data,
            shape,
            strides,
            c: flags & flags::NPY_ARRAY_C_CONTIGUOUS != 0,
            f: flags & flags::NPY_ARRAY_F_CONTIGUOUS != 0,
        },
        writable: flags & flags::NPY_ARRAY_WRITEABLE != 0,
    })
}

pub(crate) fn view<'a, T: Real>(obj: &'a Bound<'_, PyAny>) -> Option<Raw<'a, T>> {
    typed::<T>(obj).map(|v| v.raw)
}

/// The byte range an array's elements span, for the aliasing sweep.
#[derive(Clone, Copy)]
pub(crate) struct Span {
    lo: usize,
    hi: usize,
    writable: bool,
    /// Index of the tensor and role, for the message.
    tensor: usize,
    role: &'static str,
}

pub(crate) fn span<T>(
    r: &Raw<'_, T>,
    writable: bool,
    tensor: usize,
    role: &'static str,
) -> Option<Span> {
    span_bytes(
        r.ptr as usize,
        r.shape,
        r.strides,
        std::mem::size_of::<T>(),
        writable,
        tensor,
        role,
    )
}

/// The bytes from the lowest to one past the highest element of an array with this data
/// address, shape, byte strides and item size; `None` for an empty array.
fn span_bytes(
    base: usize,
    shape: &[usize],
    strides: &[isize],
    item: usize,
    writable: bool,
    tensor: usize,
    role: &'static str,
) -> Option<Span> {
    if shape.contains(&0) {
        return None;
    }
    let (mut lo, mut hi) = (0isize, 0isize);
    for (&n, &s) in shape.iter().zip(strides) {
        let reach = (n as isize - 1) * s;
        if reach < 0 {
            lo += reach;
        } else {
            hi += reach;
        }
    }
    Some(Span {
        lo: base.wrapping_add_signed(lo),
        hi: base.wrapping_add_signed(hi) + item,
        writable,
        tensor,
        role,
    })
}

/// Refuses any overlap between two arrays of which at least one is written.
fn check_aliasing(spans: &mut [Span], names: &Names<'_, '_>) -> PyResult<()> {
    spans.sort_unstable_by_key(|s| s.lo);
    let mut reach_any: Option<Span> = None;
    let mut reach_written: Option<Span> = None;
    for s in spans.iter() {
        let clash = if s.writable { reach_any } else { reach_written };
        if let Some(prev) = clash.filter(|p| p.hi > s.lo) {
            let what = |sp: &Span| {
                if sp.tensor == usize::MAX {
                    sp.role.to_owned()
                } else {
                    format!("{} {}", sp.role, names.of(sp.tensor))
                }
            };
            return Err(Error::value_error(format!(
                "{} shares memory with {} (the same array given twice, overlapping views, or a \
                 gradient that aliases a parameter or a slot); arrays updated in place must not \
                 overlap",
                what(s),
                what(&prev)
            ))
            .into());
        }
        if reach_any.is_none_or(|p| s.hi > p.hi) {
            reach_any = Some(*s);
        }
        if s.writable && reach_written.is_none_or(|p| s.hi > p.hi) {
            reach_written = Some(*s);
        }
    }
    Ok(())
}

#[cold]
fn read_only(what: &str) -> PyErr {
    Error::value_error(format!(
        "{what} is read-only; parameters and optimizer state are updated in place"
    ))
    .into()
}

/// `tensors`' mark of a row-sparse gradient in its list of converted gradients.
const ROWS: usize = usize::MAX;

/// Validates every array of a call and builds the kernels' view of it. Nothing is written.
/// Converted gradients are pushed to `keep`, which must outlive the returned tensors.
#[allow(clippy::too_many_lines)]
pub fn tensors<'py, T: Element + Real>(
    py: Python<'py>,
    params: &[Bound<'py, PyAny>],
    grads: Option<&[Bound<'py, PyAny>]>,
    state: &State<'_, 'py>,
    names: &Names<'_, 'py>,
    keep: &mut Vec<Bound<'py, PyAny>>,
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

    // Gradients that are neither arrays of `T` nor of the other float type (read with a cast
    // as they are used) are converted first (they are new arrays, so they cannot alias
    // anything); `keep` holds them for the whole call.
    // Row-sparse gradients (`IndexedSlices`) are summed into rows of their own.
    // `converted[i]`: the index in `keep` of gradient i's array, or `ROWS` for a row-sparse one.
    let mut converted: Vec<Option<usize>> = vec![None; n];
    if let Some(gs) = grads {
        for (i, g) in gs.iter().enumerate() {
            if typed::<T>(g).is_none() && typed::<T::Other>(g).is_none() {
                if sparse::is_indexed_slices(py, g) {
                    converted[i] = Some(ROWS);
                } else {
                    converted[i] = Some(keep.len());
                    keep.push(gradient_array::<T>(py, g, names, i)?.into_any());
                }
            }
        }
    }

    let per_tensor = 2 + state.slots.len() + 2;
    let mut spans: Vec<Span> = Vec::with_capacity(n * per_tensor);
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let p = typed::<T>(&params[i]).ok_or_else(|| not_param::<T>(&params[i], names, i))?;
        if !p.writable {
            return Err(read_only(&format!("parameter {}", names.of(i))));
        }
        let state_view = |obj: &'_ Bound<'py, PyAny>, what: &str| -> PyResult<()> {
            let Some(v) = typed::<T>(obj) else {
                return Err(Error::type_error(format!(
                    "{what} of parameter {} must be a {} numpy.ndarray",
                    names.of(i),
                    T::NAME
                ))
                .into());
            };
            if v.raw.shape != p.raw.shape {
                return Err(Error::value_error(format!(
                    "{what} of parameter {} has shape {} but the parameter has shape {}",
                    names.of(i),
                    shape_tuple(v.raw.shape),
                    shape_tuple(p.raw.shape)
                ))
                .into());
            }
            if !v.writable {
                return Err(read_only(&format!("{what} of parameter {}", names.of(i))));
            }
            Ok(())
        };
        for (what, list) in &state.slots {
            state_view(&list[i], what)?;
        }
        if let Some(a) = state.accumulators {
            state_view(&a[i], "gradient accumulator")?;
        }
        if let Some(a) = state.averages {
            state_view(&a[i], "moving average")?;
        }
        let sparse = converted[i] == Some(ROWS);
        let g_obj = grads.map(|gs| match converted[i] {
            Some(k) if k != ROWS => &keep[k],
            _ => &gs[i],
        });
        let mut rows = None;
        let g = match g_obj {
            Some(obj) if sparse => {
                let obj = obj.clone();
                rows = Some(sparse::rows::<T>(
                    py,
                    &obj,
                    p.raw.shape,
                    names,
                    i,
                    keep,
                    &mut spans,
                )?);
                None
            }
            Some(obj) => {
                let v = match (typed::<T>(obj), typed::<T::Other>(obj)) {
                    (Some(v), _) => GradRaw::Same(v.raw),
                    (None, Some(v)) => GradRaw::Cast(v.raw),
                    (None, None) => {
                        return Err(Error::type_error(format!(
                            "gradient {} is not an array",
                            names.of(i)
                        ))
                        .into())
                    }
                };
                if v.shape() != p.raw.shape {
                    return Err(Error::value_error(format!(
                        "gradient {} has shape {} but the parameter has shape {}",
                        names.of(i),
                        shape_tuple(v.shape()),
                        shape_tuple(p.raw.shape)
                    ))
                    .into());
                }
                Some(v)
            }
            None => None,
        };
        // Views of the state arrays (validated above).
        let slots: Vec<Raw<'_, T>> = state
            .slots
            .iter()
            .filter_map(|(_, l)| view::<T>(&l[i]))
            .collect();
        let accumulator = state.accumulators.and_then(|a| view::<T>(&a[i]));
        let average = state.averages.and_then(|a| view::<T>(&a[i]));

        spans.extend(span(&p.raw, true, i, "parameter"));
        if let Some(g) = &g {
            spans.extend(g.span(i));
        }
        for ((what, _), r) in state.slots.iter().zip(&slots) {
            spans.extend(span(r, true, i, what));
        }
        if let Some(r) = &accumulator {
            spans.extend(span(r, true, i, "the gradient accumulator of parameter"));
        }
        if let Some(r) = &average {
            spans.extend(span(r, true, i, "the moving average of parameter"));
        }

        let group = Group {
            param: p.raw,
            grad: g,
            slots,
            accumulator,
            average,
        };
        let decay = state.decay_mask.is_none_or(|m| m[i]);
        let mut t = tensor(&group, decay, rows.is_some(), &|| {
            format!("parameter {}", names.of(i))
        })?;
        if let Some(rows) = rows {
            t.grad = Some(Grad::Rows(rows));
        }
        out.push(t);
    }
    check_aliasing(&mut spans, names)?;
    Ok(out)
}

#[cold]
fn not_param<T: Real>(obj: &Bound<'_, PyAny>, names: &Names<'_, '_>, i: usize) -> PyErr {
    if typed::<f32>(obj).is_some() || typed::<f64>(obj).is_some() {
        return Error::type_error(format!(
            "parameter {} is not {}: one call takes parameters of one dtype",
            names.of(i),
            T::NAME
        ))
        .into();
    }
    not_float_param(obj, names, i).into()
}

/// The kernels' view of one tensor. `rows`: its gradient is row-sparse (not in `g`), so the
/// tensor is walked in logical C order, where a row is a run of elements.
fn tensor<T: Real>(
    g: &Group<'_, T>,
    decay: bool,
    rows: bool,
    name: &dyn Fn() -> String,
) -> PyResult<Tensor<T>> {
    let all = || {
        std::iter::once(&g.param)
            .chain(g.slots.iter())
            .chain(g.accumulator.iter())
            .chain(g.average.iter())
    };
    let grad_c = g.grad.as_ref().is_none_or(GradRaw::c);
    let grad_f = !rows && g.grad.as_ref().is_none_or(GradRaw::f);
    // Walk memory order when every operand is laid out alike, else logical C order.
    let all_c = grad_c && all().all(|r| r.c);
    let flat = all_c || (grad_f && all().all(|r| r.f));
    let operand = |r: &Raw<'_, T>, writable: bool, what: &str| -> PyResult<Operand<T>> {
        let strides = element_strides(r, writable, &|| format!("{what} of {}", name()))?;
        Ok(Operand {
            ptr: r.ptr,
            strides: if flat { None } else { strides },
        })
    };
    let what = || format!("the gradient of {}", name());
    let grad = match &g.grad {
        None => None,
        Some(GradRaw::Same(r)) => Some(Grad::Same(operand(r, false, "the gradient")?)),
        Some(GradRaw::Cast(r)) => {
            let strides = element_strides(r, false, &what)?;
            Some(Grad::Cast(Operand {
                ptr: r.ptr,
                strides: if flat { None } else { strides },
            }))
        }
    };
    let len = g.param.shape.iter().product();
    Ok(Tensor {
        len,
        // The shape is only needed to walk strided operands.
        shape: if flat || all_c {
            Box::default()
        } else {
            g.param.shape.into()
        },
        param: operand(&g.param, true, "the array")?,
        grad,
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

/// The span of any ndarray (any dtype), or a TypeError naming what it is.
pub(crate) fn any_span(
    obj: &Bound<'_, PyAny>,
    writable: bool,
    tensor: usize,
    role: &'static str,
) -> PyResult<Option<Span>> {
    let arr = obj.cast::<PyUntypedArray>().map_err(|_| {
        Error::type_error(format!("expected a numpy.ndarray, got {}", type_name(obj)))
    })?;
    // SAFETY: reads the data pointer of a live array.
    let base = unsafe { (*arr.as_array_ptr()).data } as usize;
    Ok(span_bytes(
        base,
        arr.shape(),
        arr.strides(),
        arr.dtype().itemsize(),
        writable,
        tensor,
        role,
    ))
}

/// See `functions::check_disjoint`.
pub fn check_disjoint(
    readonly: &[Bound<'_, PyAny>],
    writable: &[Bound<'_, PyAny>],
    names: &Names<'_, '_>,
) -> PyResult<()> {
    let mut spans = Vec::with_capacity(readonly.len() + writable.len());
    for (i, a) in readonly.iter().enumerate() {
        spans.extend(any_span(a, false, i, "gradient")?);
    }
    for a in writable {
        spans.extend(any_span(a, true, usize::MAX, "an array this step writes")?);
    }
    check_aliasing(&mut spans, names)
}
