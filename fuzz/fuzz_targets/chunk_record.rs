//! Fuzz target: untrusted bytes into the engine's chunk_record decoder; it must never panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    tripod_engine::fuzzing::chunk_record(data);
});
