//! Fuzz target: untrusted bytes into the replica set's set-state decoder; it must never panic
//! and whatever decodes must re-encode identically.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok((state, me)) = tripod_replication::SetState::decode(data) {
        assert_eq!(state.encode(me), data);
    }
});
