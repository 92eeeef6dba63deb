//! Sequences of requests from several connections applied to the server's
//! state, checking its invariants after each: see `polygear_fuzz::server`.
#![no_main]

use polygear_fuzz::server::{run, Input};

libfuzzer_sys::fuzz_target!(|input: Input| run(&input));
