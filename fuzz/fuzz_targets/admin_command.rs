//! Admin text through the server's command parser and the client's reply
//! parsers: see `polygear_fuzz::admin`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| polygear_fuzz::admin::check(data));
