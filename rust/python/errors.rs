//! The one mapping from Rust errors to Python exceptions. The exception classes are defined in
//! Python (`nfct/errors.py`, each an `NfctError` and the builtin that fits) and imported here.

use crate::ip::ExtError;
use crate::replay::{ReplayError, Summary};
use crate::sysctl::SysctlError;
use pyo3::prelude::*;

pyo3::import_exception!(nfct.errors, NfctError);
pyo3::import_exception!(nfct.errors, NfctTypeError);
pyo3::import_exception!(nfct.errors, NfctValueError);
pyo3::import_exception!(nfct.errors, UnknownSysctlError);
pyo3::import_exception!(nfct.errors, CaptureError);
pyo3::import_exception!(nfct.errors, HookError);
pyo3::import_exception!(nfct.errors, OutputError);
pyo3::import_exception!(nfct.errors, MissingExtraError);

/// Errors raised by the binding layer.
pub(crate) enum Error {
    /// An argument of the wrong type.
    Type(String),
    /// An argument with a bad value.
    Value(String),
    Sysctl(SysctlError),
    /// A capture that cannot be read further; what was read before it is in `summary`.
    Capture {
        path: String,
        offset: u64,
        message: String,
        summary: Box<Summary>,
    },
    /// A file the replay writes to (per-packet lines, events) that cannot be written.
    Output(String, std::io::Error),
    /// A hook operation raised: the exception itself when it is a Python one.
    Hook(ExtError),
    /// A bug of nfct's own, with what was done kept.
    Internal(String),
    /// The replay was stopped (Ctrl-C): the exception, with what was done.
    Interrupted(ExtError, Box<Summary>),
}

pub(crate) type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn value(m: impl Into<String>) -> Error {
        Error::Value(m.into())
    }

    pub(crate) fn type_(m: impl Into<String>) -> Error {
        Error::Type(m.into())
    }

    /// A replay that stopped, with the counts it had reached.
    pub(crate) fn replay(e: ReplayError, summary: Summary, what: &str) -> Error {
        match e {
            ReplayError::Capture(c) => Error::Capture {
                path: c.path,
                offset: c.offset,
                message: c.message,
                summary: Box::new(summary),
            },
            ReplayError::Output(e) => Error::Output(what.to_string(), e),
            ReplayError::Hook(e) => Error::Hook(e),
            ReplayError::Internal(m) => Error::Internal(format!("replay failed: {m}")),
            ReplayError::Interrupted(e) => Error::Interrupted(e, Box::new(summary)),
        }
    }
}

impl From<SysctlError> for Error {
    fn from(e: SysctlError) -> Error {
        Error::Sysctl(e)
    }
}

impl From<Error> for PyErr {
    fn from(e: Error) -> PyErr {
        match e {
            Error::Type(m) => NfctTypeError::new_err(m),
            Error::Value(m) => NfctValueError::new_err(m),
            Error::Sysctl(SysctlError::Unknown(n)) => {
                UnknownSysctlError::new_err(format!("unknown sysctl {n:?}"))
            }
            Error::Sysctl(e) => NfctValueError::new_err(e.to_string()),
            Error::Capture { path, offset, message, summary } => {
                let text = format!("{path}: {message} at byte offset {offset}");
                let result = super::result::ReplayResult::from_summary(*summary);
                CaptureError::new_err((text, path, offset, result))
            }
            // A reader that went away (`| head`) is the builtin's, so callers can treat it as the
            // end of their output; other failures are (errno, strerror, filename) as OSError's.
            Error::Output(what, e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                pyo3::exceptions::PyBrokenPipeError::new_err(format!("{what}: {e}"))
            }
            Error::Output(what, e) => match e.raw_os_error() {
                Some(errno) => {
                    let strerror = e.to_string();
                    let strerror = strerror.split(" (os error").next().unwrap_or_default().to_string();
                    OutputError::new_err((errno, strerror, what))
                }
                None => OutputError::new_err(format!("{what}: {e}")),
            },
            Error::Hook(e) => hook_err(e),
            Error::Internal(m) => NfctError::new_err(m),
            // The exception (KeyboardInterrupt) itself, carrying what was done as `summary`.
            Error::Interrupted(e, summary) => {
                let err = hook_err(e);
                Python::attach(|py| {
                    let result = super::result::ReplayResult::from_summary(*summary);
                    if let Ok(r) = Py::new(py, result) {
                        let _ = err.value(py).setattr("summary", r);
                    }
                });
                err
            }
        }
    }
}

/// The exception inside a hook operation's error: the Python exception it raised, else a
/// `HookError`.
pub(crate) fn hook_err(e: ExtError) -> PyErr {
    match (*e.0).downcast::<PyErr>() {
        Ok(e) => *e,
        Err(_) => HookError::new_err("a hook operation failed"),
    }
}
