#![no_main]
//! libFuzzer over `quilldb_fuzzing::parameter_batches`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| quilldb_fuzzing::parameter_batches(data));
