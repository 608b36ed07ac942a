//! Fuzz target: untrusted bytes from a backup target into every backup decoder (block
//! objects, manifests, volume indexes). None may panic; a block object that decodes must
//! hash to its name, and a manifest that decodes must re-encode to one that decodes equal.
#![no_main]

use tripod::backup::format::{decode_block, encode_block, BlockHash, Manifest, VolumeIndex};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // Under the name it claims in its header (the only name it could pass under), and
    // under a name it cannot have.
    let claimed = data
        .get(16..48)
        .and_then(|h| <[u8; 32]>::try_from(h).ok())
        .map(BlockHash);
    for name in claimed.into_iter().chain([BlockHash([0; 32])]) {
        if let Ok(content) = decode_block(&name, data) {
            assert_eq!(BlockHash::of(&content), name);
            assert_eq!(encode_block(&content).0, name);
        }
    }
    if let Ok(m) = Manifest::decode(data) {
        assert_eq!(Manifest::decode(&m.encode()).ok(), Some(m));
    }
    let _ = VolumeIndex::decode(data);
});
