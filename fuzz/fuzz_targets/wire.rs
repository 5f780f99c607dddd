#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| nfct_fuzz::wire(data));
