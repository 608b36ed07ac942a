//! Fuzz target: untrusted bytes into the engine's manifest decoder; it must never panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    tripod_engine::fuzzing::manifest(data);
});
