//! Fuzz target `unixfs_export`: see [`rm_fuzz::unixfs_export`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rm_fuzz::unixfs_export::run(data));
