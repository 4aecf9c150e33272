#![no_main]
//! libFuzzer over `quilldb_fuzzing::row_decoder`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| quilldb_fuzzing::row_decoder(data));
