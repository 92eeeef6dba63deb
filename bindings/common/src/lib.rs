//! What polygear's three glue crates (`bindings/python`, `bindings/node`,
//! `bindings/ruby`) would otherwise each write: checks of the arguments they
//! receive ([`args`]), the runtime the blocking APIs drive from their callers'
//! threads and its interruptible wait loop ([`runtime`]), concurrent
//! submissions for `submit_many` ([`batch`]), and the one table that maps every
//! [`polygear::Error`] onto a stable code and each language's exception class
//! ([`errors`]).
//!
//! Nothing here knows a language: values come in as plain Rust values, problems
//! go out as [`args::ArgError`] or [`polygear::Error`], and each binding turns
//! them into its own exceptions (with the names the table gives). Releasing the
//! interpreter lock (GIL, GVL) around a wait also stays in the binding.

pub mod args;
pub mod batch;
pub mod errors;
pub mod runtime;

use std::sync::{Mutex, MutexGuard};

/// Locks `m`, going on with the data of a poisoned lock (a panicking thread
/// cannot leave the values the bindings keep behind locks half-updated).
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
