#![no_main]
//! libFuzzer over `quilldb_fuzzing::sql_front_end`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| quilldb_fuzzing::sql_front_end(data));
