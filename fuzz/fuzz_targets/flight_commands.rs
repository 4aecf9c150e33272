#![no_main]
//! libFuzzer over `quilldb_fuzzing::flight_commands`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| quilldb_fuzzing::flight_commands(data));
