//! Fuzz target `voucher`: see [`rm_fuzz::voucher`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rm_fuzz::voucher::run(data));
