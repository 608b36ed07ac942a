//! Fuzz target: untrusted bytes into every NBD decoder (request header, NBD_OPT_GO/INFO and
//! meta-context option data); none may panic.
#![no_main]

use tripod::nbd::proto::{parse_go, parse_meta_context, Request, REQUEST_LEN};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Some(header) = data.first_chunk::<REQUEST_LEN>() {
        let _ = Request::decode(header);
    }
    let _ = parse_go(data);
    let _ = parse_meta_context(data);
});
