#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| secretsfs::fuzzing::secrets_file(data));
