//! A scheduler's Subscribe, Call and Store requests, decoded and turned into core events.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    corral_master::fuzzing::scheduler_request(data);
});
