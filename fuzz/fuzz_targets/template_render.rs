#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| secretsfs::fuzzing::template_render(data));
