//! A client's byte stream (`\0RES` packets) through the frame reader and the
//! codec: see `polygear_fuzz::codec`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| polygear_fuzz::codec::check(data, false));
