#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| secretsfs::fuzzing::config(data));
