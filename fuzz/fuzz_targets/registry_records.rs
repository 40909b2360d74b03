//! Registry records as recovery reads them back.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    corral_master::fuzzing::registry(data);
});
