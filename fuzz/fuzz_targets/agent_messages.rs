//! The messages on an agent's link, decoded and turned into core events.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    corral_master::fuzzing::agent_message(data);
});
