#![no_main]
//! libFuzzer over `quilldb_fuzzing::manifest`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| quilldb_fuzzing::manifest(data));
