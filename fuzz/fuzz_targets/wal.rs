//! Fuzz target: untrusted bytes into the engine's wal decoder; it must never panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    tripod_engine::fuzzing::wal(data);
});
