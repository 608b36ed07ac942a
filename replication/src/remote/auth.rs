//! Peer authentication: both ends prove they hold the cluster secret without sending it.
//!
//! 1. client → `Hello`: magic `TRIPODRN`, version, a fresh 32-byte client nonce, the volume
//!    the connection is for (empty: node-level requests only).
//! 2. node → `Challenge`: magic, a fresh node nonce, and the node's proof
//!    `HMAC-SHA256(secret, "tripod-node" ‖ client nonce ‖ node nonce ‖ volume)`.
//! 3. client checks the node's proof (so a client never talks to an impostor), then sends
//!    its own proof `HMAC-SHA256(secret, "tripod-client" ‖ node nonce ‖ client nonce ‖
//!    volume)`.
//! 4. node checks it in constant time and answers `Verdict` (accepted, or refused with a
//!    reason) — a refused peer is closed before any request is read.
//!
//! Fresh nonces on both sides make every proof single-use; the labels keep a node's proof
//! from being replayed as a client's. The channel itself is not encrypted: run it on a
//! trusted network, as the design says.

use std::path::Path;

use bytes::{BufMut, Bytes, BytesMut};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use tripod_engine::codec::{Reader, Short};

use super::wire::{seal, WireError};

/// Magic that opens the `Hello` and `Challenge` frames.
pub const MAGIC: &[u8; 8] = b"TRIPODRN";
/// The protocol version this build speaks.
pub const VERSION: u16 = 3;
/// Shortest cluster secret accepted.
pub const MIN_SECRET_LEN: usize = 16;
/// Longest volume name (a path component on the node).
pub const MAX_VOLUME_NAME: usize = 64;

const NONCE: usize = 32;
const PROOF: usize = 32;

/// Why a secret could not be loaded or a handshake failed.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The secret is shorter than [`MIN_SECRET_LEN`] bytes.
    #[error("the cluster secret must be at least {MIN_SECRET_LEN} bytes")]
    WeakSecret,
    /// The secret file could not be read.
    #[error("reading the cluster secret from {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The peer does not hold the same secret.
    #[error("the peer failed authentication (is TRIPOD_CLUSTER_SECRET the same on both ends?)")]
    BadProof,
    /// The peer refused us.
    #[error("refused by the replica node: {0}")]
    Refused(String),
    /// The peer sent something that is not the handshake.
    #[error("bad handshake: {0}")]
    Wire(#[from] WireError),
    /// Wrong magic or version.
    #[error("the peer does not speak this protocol ({0})")]
    Protocol(String),
    /// The operating system has no random numbers for nonces.
    #[error("no randomness for a nonce: {0}")]
    Random(String),
}

/// The secret every node of a cluster shares (`TRIPOD_CLUSTER_SECRET` or `--secret-file`).
#[derive(Clone)]
pub struct ClusterSecret(Vec<u8>);

impl std::fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterSecret(..)")
    }
}

impl ClusterSecret {
    /// A secret from its bytes (at least [`MIN_SECRET_LEN`]).
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<Self, AuthError> {
        let bytes = bytes.into();
        if bytes.len() < MIN_SECRET_LEN {
            return Err(AuthError::WeakSecret);
        }
        Ok(Self(bytes))
    }

    /// The secret in `path`, without a trailing newline.
    pub fn from_file(path: &Path) -> Result<Self, AuthError> {
        let mut bytes = std::fs::read(path).map_err(|source| AuthError::Read {
            path: path.display().to_string(),
            source,
        })?;
        while matches!(bytes.last(), Some(b'\n' | b'\r')) {
            bytes.pop();
        }
        Self::new(bytes)
    }

    fn proof(&self, label: &[u8], first: &[u8], second: &[u8], volume: &str) -> [u8; PROOF] {
        self.mac(label, first, second, volume)
            .finalize()
            .into_bytes()
            .into()
    }

    fn mac(&self, label: &[u8], first: &[u8], second: &[u8], volume: &str) -> Hmac<Sha256> {
        // HMAC takes keys of any length, so this cannot fail; the fallback key is never used.
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0)
            .unwrap_or_else(|_| <Hmac<Sha256> as KeyInit>::new(&Default::default()));
        mac.update(label);
        mac.update(first);
        mac.update(second);
        // Names are short; a longer one is still bound by its bytes below.
        mac.update(
            &u16::try_from(volume.len())
                .unwrap_or(u16::MAX)
                .to_le_bytes(),
        );
        mac.update(volume.as_bytes());
        mac
    }

    /// Checks `proof` in constant time.
    fn verify(
        &self,
        label: &[u8],
        first: &[u8],
        second: &[u8],
        volume: &str,
        proof: &[u8],
    ) -> bool {
        self.mac(label, first, second, volume)
            .verify_slice(proof)
            .is_ok()
    }
}

/// A fresh random nonce.
pub(crate) fn nonce() -> Result<[u8; NONCE], AuthError> {
    let mut n = [0u8; NONCE];
    getrandom::fill(&mut n).map_err(|e| AuthError::Random(e.to_string()))?;
    Ok(n)
}

/// Whether `name` may name a volume directory on a node: 1–64 of `[A-Za-z0-9._-]`, not
/// starting with a dot (so never `.`, `..` or a hidden file), or empty for node-level
/// connections.
pub fn valid_volume_name(name: &str) -> bool {
    name.is_empty()
        || (name.len() <= MAX_VOLUME_NAME
            && !name.starts_with('.')
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')))
}

/// The client's first frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// Client nonce.
    pub nonce: [u8; NONCE],
    /// Volume the connection serves (empty: node-level).
    pub volume: String,
}

impl From<Short> for AuthError {
    fn from(s: Short) -> Self {
        AuthError::Wire(WireError::Truncated(s.what))
    }
}

/// A `u16`-length string.
fn string(r: &mut Reader, what: &'static str) -> Result<String, AuthError> {
    let len = r.u16(what)?;
    let bytes = r.take(usize::from(len), what)?;
    String::from_utf8(bytes.to_vec())
        .map_err(|_| AuthError::Wire(WireError::Invalid(format!("{what}: not UTF-8"))))
}

/// Refuses bytes after the last field.
fn finish(r: &Reader) -> Result<(), AuthError> {
    match r.remaining() {
        0 => Ok(()),
        n => Err(AuthError::Wire(WireError::Trailing(n))),
    }
}

/// Appends a `u16`-length string (a longer one is cut on a character boundary).
fn put_string(out: &mut BytesMut, s: &str) {
    let mut end = s.len().min(usize::from(u16::MAX));
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    let cut = s.get(..end).unwrap_or_default();
    out.put_u16_le(u16::try_from(cut.len()).unwrap_or(0));
    out.put_slice(cut.as_bytes());
}

fn check_magic(r: &mut Reader) -> Result<(), AuthError> {
    let magic = r.take(MAGIC.len(), "magic")?;
    if magic != MAGIC {
        return Err(AuthError::Protocol("bad magic".into()));
    }
    let version = r.u16("version")?;
    if version != VERSION {
        return Err(AuthError::Protocol(format!(
            "version {version}, this build speaks {VERSION}"
        )));
    }
    Ok(())
}

fn array<const N: usize>(r: &mut Reader, what: &'static str) -> Result<[u8; N], AuthError> {
    let b = r.take(N, what)?;
    let mut out = [0u8; N];
    out.copy_from_slice(b);
    Ok(out)
}

impl Hello {
    /// The frame (length prefix included).
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(64 + self.volume.len());
        out.put_u32_le(0);
        out.put_slice(MAGIC);
        out.put_u16_le(VERSION);
        out.put_slice(&self.nonce);
        put_string(&mut out, &self.volume);
        seal(out)
    }

    /// Parses a frame body; the volume name must be valid.
    pub fn decode(frame: Bytes) -> Result<Self, AuthError> {
        let mut r = Reader::new(&frame);
        check_magic(&mut r)?;
        let nonce = array(&mut r, "nonce")?;
        let volume = string(&mut r, "volume")?;
        finish(&r)?;
        if !valid_volume_name(&volume) {
            return Err(AuthError::Protocol(format!(
                "invalid volume name {volume:?}"
            )));
        }
        Ok(Self { nonce, volume })
    }
}

/// The node's answer to `Hello`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// Node nonce.
    pub nonce: [u8; NONCE],
    /// The node's proof.
    pub proof: [u8; PROOF],
}

impl Challenge {
    /// The challenge for `hello` from a node holding `secret`.
    pub fn answer(secret: &ClusterSecret, hello: &Hello) -> Result<Self, AuthError> {
        let nonce = nonce()?;
        let proof = secret.proof(b"tripod-node", &hello.nonce, &nonce, &hello.volume);
        Ok(Self { nonce, proof })
    }

    /// Whether the node that sent this holds `secret`.
    pub fn check(&self, secret: &ClusterSecret, hello: &Hello) -> bool {
        secret.verify(
            b"tripod-node",
            &hello.nonce,
            &self.nonce,
            &hello.volume,
            &self.proof,
        )
    }

    /// The frame (length prefix included).
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(4 + 8 + 2 + NONCE + PROOF);
        out.put_u32_le(0);
        out.put_slice(MAGIC);
        out.put_u16_le(VERSION);
        out.put_slice(&self.nonce);
        out.put_slice(&self.proof);
        seal(out)
    }

    /// Parses a frame body.
    pub fn decode(frame: Bytes) -> Result<Self, AuthError> {
        let mut r = Reader::new(&frame);
        check_magic(&mut r)?;
        let nonce = array(&mut r, "nonce")?;
        let proof = array(&mut r, "proof")?;
        finish(&r)?;
        Ok(Self { nonce, proof })
    }
}

/// The client's proof, sent after it checked the node's.
pub fn client_proof(secret: &ClusterSecret, hello: &Hello, challenge: &Challenge) -> Bytes {
    let proof = secret.proof(
        b"tripod-client",
        &challenge.nonce,
        &hello.nonce,
        &hello.volume,
    );
    let mut out = BytesMut::with_capacity(4 + PROOF);
    out.put_u32_le(0);
    out.put_slice(&proof);
    seal(out)
}

/// Checks the client's proof frame body.
pub fn check_client_proof(
    secret: &ClusterSecret,
    hello: &Hello,
    challenge: &Challenge,
    frame: &[u8],
) -> bool {
    frame.len() == PROOF
        && secret.verify(
            b"tripod-client",
            &challenge.nonce,
            &hello.nonce,
            &hello.volume,
            frame,
        )
}

/// The node's verdict frame: `None` accepts, `Some(reason)` refuses.
pub fn verdict(refusal: Option<&str>) -> Bytes {
    let mut out = BytesMut::with_capacity(64);
    out.put_u32_le(0);
    match refusal {
        None => out.put_u8(0),
        Some(reason) => {
            out.put_u8(1);
            put_string(&mut out, reason);
        }
    }
    seal(out)
}

/// Parses a verdict frame body.
pub fn decode_verdict(frame: Bytes) -> Result<(), AuthError> {
    let mut r = Reader::new(&frame);
    match r.u8("verdict")? {
        0 => finish(&r),
        1 => {
            let reason = string(&mut r, "refusal")?;
            finish(&r)?;
            Err(AuthError::Refused(reason))
        }
        t => Err(AuthError::Wire(WireError::Invalid(format!("verdict {t}")))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(s: &str) -> ClusterSecret {
        ClusterSecret::new(s.as_bytes().to_vec()).unwrap()
    }

    fn body(frame: Bytes) -> Bytes {
        frame.slice(4..)
    }

    #[test]
    fn same_secret_passes_both_ways() {
        let s = secret("0123456789abcdef-cluster");
        let hello = Hello {
            nonce: nonce().unwrap(),
            volume: "vol-1".into(),
        };
        let hello = Hello::decode(body(hello.encode())).unwrap();
        let ch = Challenge::answer(&s, &hello).unwrap();
        let ch = Challenge::decode(body(ch.encode())).unwrap();
        assert!(ch.check(&s, &hello));
        let proof = client_proof(&s, &hello, &ch);
        assert!(check_client_proof(&s, &hello, &ch, &proof[4..]));
    }

    #[test]
    fn other_secret_volume_or_replayed_proof_fails() {
        let s = secret("0123456789abcdef-cluster");
        let other = secret("0123456789abcdef-CLUSTER");
        let hello = Hello {
            nonce: nonce().unwrap(),
            volume: "vol-1".into(),
        };
        let ch = Challenge::answer(&s, &hello).unwrap();
        assert!(
            !ch.check(&other, &hello),
            "node with another secret accepted"
        );
        let proof = client_proof(&other, &hello, &ch);
        assert!(!check_client_proof(&s, &hello, &ch, &proof[4..]));
        // A proof made for one volume does not open another.
        let proof = client_proof(&s, &hello, &ch);
        let moved = Hello {
            volume: "vol-2".into(),
            ..hello.clone()
        };
        assert!(!check_client_proof(&s, &moved, &ch, &proof[4..]));
        // The node's proof is not a client proof.
        assert!(!check_client_proof(&s, &hello, &ch, &ch.proof));
        // A fresh challenge makes an old proof useless.
        let ch2 = Challenge::answer(&s, &hello).unwrap();
        assert!(!check_client_proof(&s, &hello, &ch2, &proof[4..]));
    }

    #[test]
    fn weak_secrets_and_bad_names_are_refused() {
        assert!(matches!(
            ClusterSecret::new(b"short".to_vec()),
            Err(AuthError::WeakSecret)
        ));
        for bad in ["..", ".hidden", "a/b", "a\\b", "x y", &"v".repeat(65)] {
            assert!(!valid_volume_name(bad), "{bad}");
        }
        for good in ["", "3f1c0b9e-8a3e-4c51-9a3e-0d4f7a1b2c3d", "vol_1.a-b"] {
            assert!(valid_volume_name(good), "{good}");
        }
    }

    #[test]
    fn garbage_is_an_error() {
        for junk in [&b""[..], b"TRIPODRN", b"XXXXXXXX\x01\x00", &[0xff; 100]] {
            assert!(Hello::decode(Bytes::copy_from_slice(junk)).is_err());
            assert!(Challenge::decode(Bytes::copy_from_slice(junk)).is_err());
            assert!(decode_verdict(Bytes::copy_from_slice(junk)).is_err());
        }
    }
}
