//! PyO3 glue for the `polygear` Python package: thin wrappers that translate
//! types and errors; all protocol logic lives in the `polygear` crate, and what
//! the three language bindings share (argument checks, the runtime the blocking
//! API drives from its callers' threads, the error table) in
//! `polygear-bindings` (`bindings/common`; see its `runtime` module for why the
//! blocking API drives its own runtime).

mod admin;
mod client;
mod events;
mod json;
mod run;
mod server;
mod util;
mod worker;

use pyo3::prelude::*;

/// The native module `polygear._polygear`.
#[pymodule]
fn _polygear(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<client::Client>()?;
    m.add_class::<client::AsyncClient>()?;
    m.add_class::<client::RunningJob>()?;
    m.add_class::<client::AsyncRunningJob>()?;
    m.add_class::<client::JobStatus>()?;
    m.add_class::<client::JobEvent>()?;
    m.add_class::<worker::Job>()?;
    m.add_class::<worker::NativeWorker>()?;
    m.add_class::<admin::Admin>()?;
    m.add_class::<admin::FunctionStatus>()?;
    m.add_class::<admin::PriorityStatus>()?;
    m.add_class::<admin::WorkerInfo>()?;
    m.add_class::<admin::JobInfo>()?;
    m.add_class::<admin::RetryPolicy>()?;
    m.add_class::<admin::DeadJob>()?;
    m.add_class::<admin::DrainingWorker>()?;
    m.add_class::<admin::ScheduleInfo>()?;
    m.add_class::<server::Server>()?;
    m.add("DEFAULT_PORT", polygear::DEFAULT_PORT)?;
    m.add("BUILD_PROFILE", polygear::BUILD_PROFILE)?;
    Ok(())
}
