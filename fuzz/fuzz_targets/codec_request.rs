//! A server's byte stream (`\0REQ` packets and admin text lines) through the
//! frame reader and the codec: see `polygear_fuzz::codec`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| polygear_fuzz::codec::check(data, true));
