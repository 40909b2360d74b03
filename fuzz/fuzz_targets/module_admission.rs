//! Module bytes as the agent's admission pass reads them before compiling: never a panic,
//! whatever the bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = corral_intake::admission::admit(data);
});
