#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| secretsfs::fuzzing::sdk_answer(data));
