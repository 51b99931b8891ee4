//! Fuzzes `wxgate::fuzzing::token`: see its documentation for what the input is and what must hold.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| wxgate::fuzzing::token(data));
