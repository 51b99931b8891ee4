//! Fuzzes `wxgate::fuzzing::login_body`: see its documentation for what the input is and what must hold.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| wxgate::fuzzing::login_body(data));
