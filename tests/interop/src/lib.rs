//! polygear against real peers: the C `gearmand`, the `gearman` CLI, Perl's
//! `Gearman::Client` and our `polygeard` (the tests are in `tests/`). The servers,
//! ports and raw protocol peers they use come from `polygear-test-support`
//! (tests/support), shared with the server's own tests.

pub use polygear_test_support::*;
