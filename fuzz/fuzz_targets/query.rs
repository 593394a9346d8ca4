//! Fuzz target `query`: see [`rm_fuzz::query`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rm_fuzz::query::run(data));
