//! Fuzz target `dag_pb`: see [`rm_fuzz::dag_pb`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rm_fuzz::dag_pb::run(data));
