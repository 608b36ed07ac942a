//! Fuzz target: untrusted bytes into every replica-node decoder (request and answer frames,
//! the handshake's hello, challenge and verdict). None may panic; a request or answer that
//! decodes must re-encode to the same frame.
#![no_main]

use bytes::Bytes;
use tripod_replication::remote::{auth, wire};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let frame = Bytes::copy_from_slice(data);
    if let Ok((id, req)) = wire::decode_request(frame.clone()) {
        assert_eq!(&wire::encode_request(id, &req)[4..], data);
    }
    if let Ok((id, Ok(answer))) = wire::decode_answer(frame.clone()) {
        assert_eq!(&wire::encode_answer(id, &Ok(answer))[4..], data);
    }
    let _ = auth::Hello::decode(frame.clone());
    let _ = auth::Challenge::decode(frame.clone());
    let _ = auth::decode_verdict(frame);
});
