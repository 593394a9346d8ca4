//! Fuzz target `car_reader`: see [`rm_fuzz::car_reader`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rm_fuzz::car_reader::run(data));
