//! The one error type of the bindings and its one mapping to Python exceptions.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// An argument of the wrong type or dtype: `TypeError`.
    Type(String),
    /// An argument of the right type with a bad value (shape, aliasing, writability,
    /// hyperparameter): `ValueError`.
    Value(String),
}

impl Error {
    #[cold]
    pub fn type_error(msg: impl Into<String>) -> Self {
        Error::Type(msg.into())
    }

    #[cold]
    pub fn value_error(msg: impl Into<String>) -> Self {
        Error::Value(msg.into())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Type(m) | Error::Value(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for Error {}

#[cfg(feature = "python")]
impl From<Error> for pyo3::PyErr {
    fn from(e: Error) -> Self {
        match e {
            Error::Type(m) => pyo3::exceptions::PyTypeError::new_err(m),
            Error::Value(m) => pyo3::exceptions::PyValueError::new_err(m),
        }
    }
}
