#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| ecdn_console::fuzz_targets::keys(data));
