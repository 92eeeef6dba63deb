//! Any typed packet, encoded and decoded: see `polygear_fuzz::roundtrip`.
#![no_main]

use polygear_fuzz::roundtrip::{check, PacketDesc};

libfuzzer_sys::fuzz_target!(|desc: PacketDesc| check(&desc));
