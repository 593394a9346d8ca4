//! Fuzz target `dag_cbor`: see [`rm_fuzz::dag_cbor`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rm_fuzz::dag_cbor::run(data));
