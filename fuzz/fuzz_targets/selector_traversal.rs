//! Fuzz target `selector_traversal`: see [`rm_fuzz::selector_traversal`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rm_fuzz::selector_traversal::run(data));
