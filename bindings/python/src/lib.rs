//! PyO3 glue for the `polygear` Python package: thin wrappers that translate
//! types and errors; all protocol logic lives in the `polygear` crate.

mod admin;
mod client;
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
    m.add_class::<server::Server>()?;
    m.add("DEFAULT_PORT", polygear::DEFAULT_PORT)?;
    m.add("BUILD_PROFILE", polygear::BUILD_PROFILE)?;
    Ok(())
}
