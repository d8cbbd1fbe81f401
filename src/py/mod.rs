//! The only code that touches Python: it turns the arguments of a native call into validated
//! raw views for `crate::kernels`, holding NumPy's borrow guards for the duration of the call,
//! and runs the kernels with the GIL released.
//!
//! Validation happens completely before anything is written (a bad call changes nothing):
//! - dtype: every parameter, slot, accumulator and average has the group's dtype; gradients of
//!   the other float dtype are read with a cast (`kernels::Grad::Cast`), and lists, scalars and
//!   other real dtypes are converted as `numpy.asarray(g, dtype)` would;
//! - shapes: every operand has its parameter's shape;
//! - writability and aliasing: parameters and state must be writable; the byte ranges of all
//!   arrays of the call are sorted and swept once, and any overlap that involves a writable
//!   array is refused (see `prepare`);
//! - layout: aligned, element-multiple strides, and no writable operand that overlaps itself;
//! - row-sparse gradients (`IndexedSlices`): dense shape, integer indices in range, values'
//!   shape (see `sparse`).

pub mod adafactor;
pub mod args;
pub mod call;
pub mod checks;
pub mod gradients;
pub mod matrices;
pub mod options;
pub mod prepare;
pub mod rules;
pub mod runtime;
pub mod scalars;
pub mod sparse;
