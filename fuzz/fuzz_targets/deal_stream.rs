//! Fuzz target `deal_stream`: see [`rm_fuzz::deal_stream`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rm_fuzz::deal_stream::run(data));
