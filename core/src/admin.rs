//! Admin client: gearmand's text protocol (`status`, `workers`, …) as typed calls.
//!
//! API CONTRACT (bindings and the CLI rely on these names and signatures).

use std::time::Duration;

use crate::protocol::admin::{FunctionStatus, JobInfo, PriorityStatus, WorkerInfo};
use crate::servers::ServerAddr;
use crate::Result;

/// One admin connection to one server.
#[derive(Debug)]
pub struct Admin {
    // private fields chosen by the implementation
}

impl Admin {
    /// Connects; every later call fails with `Error::Timeout` after `timeout`.
    pub async fn connect(addr: &ServerAddr, timeout: Duration) -> Result<Admin> {
        let _ = (addr, timeout);
        todo!()
    }
    /// `status`: per function, total/running jobs and registered workers.
    pub async fn status(&mut self) -> Result<Vec<FunctionStatus>> {
        todo!()
    }
    /// `prioritystatus`: waiting jobs per priority.
    pub async fn priority_status(&mut self) -> Result<Vec<PriorityStatus>> {
        todo!()
    }
    /// `workers`: one entry per connection.
    pub async fn workers(&mut self) -> Result<Vec<WorkerInfo>> {
        todo!()
    }
    /// `version`.
    pub async fn version(&mut self) -> Result<String> {
        todo!()
    }
    /// `getpid`.
    pub async fn getpid(&mut self) -> Result<u32> {
        todo!()
    }
    /// `verbose`: the server's log level name.
    pub async fn verbose(&mut self) -> Result<String> {
        todo!()
    }
    /// `show jobs`.
    pub async fn show_jobs(&mut self) -> Result<Vec<JobInfo>> {
        todo!()
    }
    /// `show unique jobs`.
    pub async fn show_unique_jobs(&mut self) -> Result<Vec<String>> {
        todo!()
    }
    /// `cancel job HANDLE`; `Error::Server` with code `UNKNOWN_JOB` if absent.
    pub async fn cancel_job(&mut self, handle: &str) -> Result<()> {
        let _ = handle;
        todo!()
    }
    /// `maxqueue FUNC` (None: unlimited) or `maxqueue FUNC HIGH NORMAL LOW`.
    pub async fn maxqueue(&mut self, function: &str, limits: Option<[u32; 3]>) -> Result<()> {
        let _ = (function, limits);
        todo!()
    }
    /// `create function FUNC`.
    pub async fn create_function(&mut self, function: &str) -> Result<()> {
        let _ = function;
        todo!()
    }
    /// `drop function FUNC`.
    pub async fn drop_function(&mut self, function: &str) -> Result<()> {
        let _ = function;
        todo!()
    }
    /// `shutdown` / `shutdown graceful` (only servers that allow it).
    pub async fn shutdown(&mut self, graceful: bool) -> Result<()> {
        let _ = graceful;
        todo!()
    }
    /// Sends any command line and returns the raw reply (a listing up to and
    /// including the `.` line, otherwise the single line).
    pub async fn raw(&mut self, command: &str) -> Result<String> {
        let _ = command;
        todo!()
    }
}
