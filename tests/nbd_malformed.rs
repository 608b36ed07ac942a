//! Misbehaving NBD clients on a raw socket: every bad request gets the documented reply or a
//! clean disconnect, the connection survives per-request errors, and the server goes on
//! serving everyone else.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use support::*;
use tripod::nbd::proto::*;
use tripod::nbd::{Export, ServerConfig};

struct Rig {
    server: InProcess,
    _dirs: Vec<tempfile::TempDir>,
}

fn rig() -> Rig {
    let (d1, rw) = temp_set(8 << 20);
    let (d2, ro) = temp_set(8 << 20);
    let mut map = HashMap::new();
    map.insert(
        "rw".to_owned(),
        Export {
            device: rw,
            read_only: false,
        },
    );
    map.insert(
        "ro".to_owned(),
        Export {
            device: ro,
            read_only: true,
        },
    );
    let server = InProcess::start(Arc::new(StaticExports(map)), ServerConfig::default());
    Rig {
        server,
        _dirs: vec![d1, d2],
    }
}

fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut greeting = [0u8; 18];
    (&s).read_exact(&mut greeting).unwrap();
    assert_eq!(&greeting[..8], &NBD_MAGIC.to_be_bytes());
    (&s).write_all(&(CLIENT_FIXED_NEWSTYLE | CLIENT_NO_ZEROES).to_be_bytes())
        .unwrap();
    s
}

fn send_option(s: &mut TcpStream, option: u32, data: &[u8]) {
    s.write_all(&IHAVEOPT.to_be_bytes()).unwrap();
    s.write_all(&option.to_be_bytes()).unwrap();
    s.write_all(&(data.len() as u32).to_be_bytes()).unwrap();
    s.write_all(data).unwrap();
}

/// Reads one option reply: (type, data).
fn read_option_reply(s: &mut TcpStream) -> (u32, Vec<u8>) {
    let mut h = [0u8; 20];
    s.read_exact(&mut h).unwrap();
    assert_eq!(&h[..8], &REPLY_MAGIC.to_be_bytes());
    let kind = u32::from_be_bytes(h[12..16].try_into().unwrap());
    let len = u32::from_be_bytes(h[16..20].try_into().unwrap());
    let mut data = vec![0u8; len as usize];
    s.read_exact(&mut data).unwrap();
    (kind, data)
}

fn go_data(name: &str) -> Vec<u8> {
    let mut d = (name.len() as u32).to_be_bytes().to_vec();
    d.extend_from_slice(name.as_bytes());
    d.extend_from_slice(&0u16.to_be_bytes());
    d
}

/// Negotiates export `name` with NBD_OPT_GO (simple replies).
fn open(port: u16, name: &str) -> TcpStream {
    let mut s = connect(port);
    send_option(&mut s, OPT_GO, &go_data(name));
    loop {
        let (kind, _) = read_option_reply(&mut s);
        if kind == REP_ACK {
            return s;
        }
        assert_eq!(kind, REP_INFO, "GO refused");
    }
}

/// Appends one request header to `b`.
fn put_request(b: &mut Vec<u8>, kind: u16, flags: u16, handle: u64, offset: u64, len: u32) {
    b.extend_from_slice(&REQUEST_MAGIC.to_be_bytes());
    b.extend_from_slice(&flags.to_be_bytes());
    b.extend_from_slice(&kind.to_be_bytes());
    b.extend_from_slice(&handle.to_be_bytes());
    b.extend_from_slice(&offset.to_be_bytes());
    b.extend_from_slice(&len.to_be_bytes());
}

fn request(s: &mut TcpStream, kind: u16, flags: u16, handle: u64, offset: u64, len: u32) {
    let mut b = Vec::with_capacity(28);
    put_request(&mut b, kind, flags, handle, offset, len);
    s.write_all(&b).unwrap();
}

/// Reads a simple reply: (handle, error).
fn reply(s: &mut TcpStream) -> (u64, u32) {
    let mut h = [0u8; 16];
    s.read_exact(&mut h).unwrap();
    assert_eq!(&h[..4], &SIMPLE_REPLY_MAGIC.to_be_bytes());
    (
        u64::from_be_bytes(h[8..16].try_into().unwrap()),
        u32::from_be_bytes(h[4..8].try_into().unwrap()),
    )
}

/// The connection still works: a 512-byte read succeeds.
fn still_works(s: &mut TcpStream) {
    request(s, CMD_READ, 0, 777, 0, 512);
    assert_eq!(reply(s), (777, 0));
    let mut buf = [0u8; 512];
    s.read_exact(&mut buf).unwrap();
}

/// The server closed the connection (end of stream or reset; a timeout does not count).
fn closed(s: &mut TcpStream) -> bool {
    let mut b = [0u8; 1];
    match s.read(&mut b) {
        Ok(0) => true,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
        Ok(_) => false,
    }
}

/// Another client is served normally.
fn server_alive(r: &Rig) {
    let out = Command::new("nbdinfo")
        .arg(r.server.uri("rw"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn per_request_errors_get_the_documented_errno_and_the_connection_survives() {
    let r = rig();
    let mut s = open(r.server.port, "rw");
    let size = 8u64 << 20;
    request(&mut s, CMD_READ, 0, 1, size - 100, 512);
    assert_eq!(reply(&mut s), (1, errno::EINVAL), "read past the end");
    request(&mut s, CMD_WRITE, 0, 2, size - 100, 512);
    s.write_all(&[0u8; 512]).unwrap();
    assert_eq!(reply(&mut s), (2, errno::ENOSPC), "write past the end");
    request(&mut s, CMD_WRITE_ZEROES, 0, 3, u64::MAX - 10, 4096);
    assert_eq!(
        reply(&mut s),
        (3, errno::ENOSPC),
        "zeroes past the end (overflowing)"
    );
    request(&mut s, CMD_TRIM, 0, 4, size, 1);
    assert_eq!(reply(&mut s), (4, errno::EINVAL), "trim past the end");
    request(&mut s, 99, 0, 5, 0, 512);
    assert_eq!(reply(&mut s), (5, errno::EINVAL), "unknown command");
    request(&mut s, CMD_READ, 1 << 9, 6, 0, 512);
    assert_eq!(reply(&mut s), (6, errno::EINVAL), "unknown flag");
    request(&mut s, CMD_READ, 0, 7, 0, 0);
    assert_eq!(reply(&mut s), (7, errno::EINVAL), "zero length");
    request(&mut s, CMD_FLUSH, 0, 8, 4096, 0);
    assert_eq!(reply(&mut s), (8, errno::EINVAL), "flush with a range");
    request(&mut s, CMD_BLOCK_STATUS, 0, 9, 0, 4096);
    assert_eq!(
        reply(&mut s),
        (9, errno::EINVAL),
        "block status without a context"
    );
    still_works(&mut s);
    server_alive(&r);
}

#[test]
fn oversized_requests_are_refused_without_allocating_them() {
    let r = rig();
    let mut s = open(r.server.port, "rw");
    request(&mut s, CMD_READ, 0, 1, 0, u32::MAX);
    assert_eq!(reply(&mut s), (1, errno::EOVERFLOW));
    // An oversized write's payload is read and thrown away in small pieces.
    let len = 40u32 << 20;
    request(&mut s, CMD_WRITE, 0, 2, 0, len);
    let chunk = vec![0xeeu8; 1 << 20];
    for _ in 0..40 {
        s.write_all(&chunk).unwrap();
    }
    assert_eq!(reply(&mut s), (2, errno::EOVERFLOW));
    still_works(&mut s);
    server_alive(&r);
}

#[test]
fn writes_to_a_read_only_export_get_eperm() {
    let r = rig();
    let mut s = open(r.server.port, "ro");
    request(&mut s, CMD_WRITE, 0, 1, 0, 512);
    s.write_all(&[1u8; 512]).unwrap();
    assert_eq!(reply(&mut s), (1, errno::EPERM));
    request(&mut s, CMD_TRIM, 0, 2, 0, 512);
    assert_eq!(reply(&mut s), (2, errno::EPERM));
    request(&mut s, CMD_WRITE_ZEROES, 0, 3, 0, 512);
    assert_eq!(reply(&mut s), (3, errno::EPERM));
    still_works(&mut s);
}

#[test]
fn bad_magic_and_truncated_headers_end_only_that_connection() {
    let r = rig();
    let mut s = open(r.server.port, "rw");
    s.write_all(&[0xffu8; 28]).unwrap();
    assert!(closed(&mut s), "bad magic must disconnect");
    let mut t = open(r.server.port, "rw");
    t.write_all(&REQUEST_MAGIC.to_be_bytes()).unwrap();
    t.write_all(&[0u8; 6]).unwrap();
    drop(t); // truncated header, then gone
             // Options after GO are not options any more: the IHAVEOPT magic is a bad request magic.
    let mut u = open(r.server.port, "rw");
    send_option(&mut u, OPT_LIST, &[0u8; 12]); // 28 bytes: a whole request header
    assert!(closed(&mut u));
    server_alive(&r);
}

#[test]
fn negotiation_errors_are_replied_and_negotiation_goes_on() {
    let r = rig();
    let mut s = connect(r.server.port);
    send_option(&mut s, 0x4242, b"whatever");
    assert_eq!(read_option_reply(&mut s).0, REP_ERR_UNSUP);
    send_option(&mut s, OPT_GO, &go_data("no-such-volume"));
    assert_eq!(read_option_reply(&mut s).0, REP_ERR_UNKNOWN);
    send_option(&mut s, OPT_GO, &[0, 0, 0, 200, 1]);
    assert_eq!(read_option_reply(&mut s).0, REP_ERR_INVALID);
    send_option(&mut s, OPT_LIST, b"junk");
    assert_eq!(read_option_reply(&mut s).0, REP_ERR_INVALID);
    send_option(&mut s, OPT_SET_META_CONTEXT, &[0; 8]);
    assert_eq!(
        read_option_reply(&mut s).0,
        REP_ERR_INVALID,
        "needs structured replies"
    );
    send_option(&mut s, OPT_LIST, &[]);
    let mut names = Vec::new();
    loop {
        let (kind, data) = read_option_reply(&mut s);
        if kind == REP_ACK {
            break;
        }
        assert_eq!(kind, REP_SERVER);
        names.push(String::from_utf8(data[4..].to_vec()).unwrap());
    }
    names.sort();
    assert_eq!(names, vec!["ro", "rw"]);
    send_option(&mut s, OPT_GO, &go_data("rw"));
    loop {
        let (kind, _) = read_option_reply(&mut s);
        if kind == REP_ACK {
            break;
        }
    }
    still_works(&mut s);
    let mut a = connect(r.server.port);
    send_option(&mut a, OPT_ABORT, &[]);
    assert_eq!(read_option_reply(&mut a).0, REP_ACK);
    assert!(closed(&mut a));
    let mut huge = connect(r.server.port);
    huge.write_all(&IHAVEOPT.to_be_bytes()).unwrap();
    huge.write_all(&OPT_GO.to_be_bytes()).unwrap();
    huge.write_all(&u32::MAX.to_be_bytes()).unwrap();
    assert!(closed(&mut huge), "absurd option length must disconnect");
    server_alive(&r);
}

#[test]
fn pipelined_requests_are_all_answered_by_handle() {
    let r = rig();
    let mut s = open(r.server.port, "rw");
    for h in 0..64u64 {
        request(&mut s, CMD_WRITE, CMD_FLAG_FUA, h, h * 4096, 4096);
        s.write_all(&[h as u8; 4096]).unwrap();
    }
    let mut seen: Vec<u64> = (0..64)
        .map(|_| reply(&mut s))
        .map(|(h, e)| {
            assert_eq!(e, 0);
            h
        })
        .collect();
    seen.sort_unstable();
    assert_eq!(seen, (0..64).collect::<Vec<_>>());
    request(&mut s, CMD_FLUSH, 0, 100, 0, 0);
    assert_eq!(reply(&mut s), (100, 0));
    request(&mut s, CMD_READ, 0, 101, 63 * 4096, 4096);
    assert_eq!(reply(&mut s), (101, 0));
    let mut buf = vec![0u8; 4096];
    s.read_exact(&mut buf).unwrap();
    assert!(buf.iter().all(|&b| b == 63));
    request(&mut s, CMD_DISC, 0, 102, 0, 0);
    assert!(closed(&mut s));
}

/// A device whose every operation fails as a replica set without quorum does.
struct Broken;

impl tripod::nbd::BlockDevice for Broken {
    fn size(&self) -> u64 {
        1 << 20
    }
    fn read(&self, _: u64, _: u32) -> Result<bytes::Bytes, tripod::nbd::DeviceError> {
        Err(tripod::nbd::DeviceError::Io("no quorum".into()))
    }
    fn write(&self, _: u64, _: bytes::Bytes) -> Result<(), tripod::nbd::DeviceError> {
        Err(tripod::nbd::DeviceError::Io("no quorum".into()))
    }
    fn write_zeroes(&self, _: u64, _: u32, _: bool) -> Result<(), tripod::nbd::DeviceError> {
        Err(tripod::nbd::DeviceError::Io("no quorum".into()))
    }
    fn trim(&self, _: u64, _: u32) -> Result<(), tripod::nbd::DeviceError> {
        Err(tripod::nbd::DeviceError::Io("no quorum".into()))
    }
    fn flush(&self) -> Result<(), tripod::nbd::DeviceError> {
        Err(tripod::nbd::DeviceError::Io("no quorum".into()))
    }
    fn allocation(
        &self,
        _: u64,
        _: u32,
    ) -> Result<Vec<tripod::nbd::Run>, tripod::nbd::DeviceError> {
        Err(tripod::nbd::DeviceError::Io("no quorum".into()))
    }
}

#[test]
fn a_failing_volume_gets_eio_replies_and_the_server_keeps_running() {
    let mut map = HashMap::new();
    map.insert(
        "broken".to_owned(),
        Export {
            device: Arc::new(Broken),
            read_only: false,
        },
    );
    let server = InProcess::start(Arc::new(StaticExports(map)), ServerConfig::default());
    let mut s = open(server.port, "broken");
    request(&mut s, CMD_WRITE, 0, 1, 0, 512);
    s.write_all(&[1u8; 512]).unwrap();
    assert_eq!(reply(&mut s), (1, errno::EIO));
    request(&mut s, CMD_READ, 0, 2, 0, 512);
    assert_eq!(reply(&mut s), (2, errno::EIO));
    request(&mut s, CMD_FLUSH, 0, 3, 0, 0);
    assert_eq!(reply(&mut s), (3, errno::EIO));
    request(&mut s, CMD_DISC, 0, 4, 0, 0);
    assert!(closed(&mut s));
    let again = open(server.port, "broken");
    drop(again);
}

/// A device whose content is a function of the offset; reads of even 4 KiB blocks are
/// answered at once (as cached data is), odd ones on a blocking thread after a pause, so one
/// pipeline mixes replies answered on the connection's task with replies of their own tasks.
struct Mixed;

fn pattern(offset: u64, len: u32) -> bytes::Bytes {
    (offset..offset + u64::from(len))
        .map(|i| (i / 4096 * 7 + i % 251) as u8)
        .collect()
}

impl tripod::nbd::BlockDevice for Mixed {
    fn size(&self) -> u64 {
        1 << 20
    }
    fn read(&self, offset: u64, len: u32) -> Result<bytes::Bytes, tripod::nbd::DeviceError> {
        std::thread::sleep(Duration::from_millis(2));
        Ok(pattern(offset, len))
    }
    fn read_async(
        self: Arc<Self>,
        offset: u64,
        len: u32,
    ) -> tripod::nbd::DeviceFuture<bytes::Bytes> {
        if (offset / 4096) % 2 == 0 {
            Box::pin(std::future::ready(Ok(pattern(offset, len))))
        } else {
            Box::pin(async move {
                tokio::task::spawn_blocking(move || self.read(offset, len))
                    .await
                    .map_err(|e| tripod::nbd::DeviceError::Io(e.to_string()))?
            })
        }
    }
    fn write(&self, _: u64, _: bytes::Bytes) -> Result<(), tripod::nbd::DeviceError> {
        Ok(())
    }
    fn write_zeroes(&self, _: u64, _: u32, _: bool) -> Result<(), tripod::nbd::DeviceError> {
        Ok(())
    }
    fn trim(&self, _: u64, _: u32) -> Result<(), tripod::nbd::DeviceError> {
        Ok(())
    }
    fn flush(&self) -> Result<(), tripod::nbd::DeviceError> {
        Ok(())
    }
    fn allocation(
        &self,
        offset: u64,
        len: u32,
    ) -> Result<Vec<tripod::nbd::Run>, tripod::nbd::DeviceError> {
        Ok(vec![tripod::nbd::Run {
            len: u64::from(len),
            data: offset < (1 << 20),
        }])
    }
}

#[test]
fn a_pipeline_of_ready_waiting_and_refused_requests_is_answered_once_each_with_its_data() {
    let mut map = HashMap::new();
    map.insert(
        "mixed".to_owned(),
        Export {
            device: Arc::new(Mixed),
            read_only: false,
        },
    );
    let server = InProcess::start(Arc::new(StaticExports(map)), ServerConfig::default());
    let mut s = open(server.port, "mixed");
    // Everything is sent before any reply is read: 200 reads of 1–3 blocks (some answered
    // at once, some later), every tenth request out of range (refused at once), and writes
    // whose payloads sit between the headers.
    let mut expect: HashMap<u64, (u32, Option<(u64, u32)>)> = HashMap::new();
    let mut batch = Vec::new();
    for h in 0..200u64 {
        let offset = (h * 37 % 250) * 4096;
        let len = 4096 * (1 + (h % 3) as u32);
        if h % 10 == 9 {
            put_request(&mut batch, CMD_READ, 0, h, 1 << 20, 4096);
            expect.insert(h, (errno::EINVAL, None));
        } else if h % 10 == 4 {
            put_request(&mut batch, CMD_WRITE, 0, h, offset, 512);
            batch.extend_from_slice(&[h as u8; 512]);
            expect.insert(h, (0, None));
        } else {
            put_request(&mut batch, CMD_READ, 0, h, offset, len);
            expect.insert(h, (0, Some((offset, len))));
        }
    }
    s.write_all(&batch).unwrap();
    for _ in 0..200 {
        let (h, e) = reply(&mut s);
        let (want_e, data) = expect.remove(&h).expect("one reply per handle");
        assert_eq!(e, want_e, "handle {h}");
        if let Some((offset, len)) = data {
            let mut buf = vec![0u8; len as usize];
            s.read_exact(&mut buf).unwrap();
            assert_eq!(buf, pattern(offset, len), "handle {h}");
        }
    }
    assert!(expect.is_empty());
    still_works(&mut s);
}

#[test]
fn the_connection_cap_and_the_handshake_timeout_hold() {
    let (_dir, set) = temp_set(1 << 20);
    let mut map = HashMap::new();
    map.insert(
        "v".to_owned(),
        Export {
            device: set,
            read_only: false,
        },
    );
    let config = ServerConfig {
        max_connections: 1,
        handshake_timeout: Duration::from_millis(500),
        ..ServerConfig::default()
    };
    let server = InProcess::start(Arc::new(StaticExports(map)), config);
    let mut first = open(server.port, "v");
    // The second connection is over the cap: closed before any greeting.
    let mut second = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    second
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    assert!(closed(&mut second));
    still_works(&mut first);
    request(&mut first, CMD_DISC, 0, 9, 0, 0);
    assert!(closed(&mut first));
    // A client that never finishes negotiating is dropped after the handshake timeout.
    let mut idle = connect_when_free(server.port);
    assert!(closed(&mut idle), "silent client must be disconnected");
}

/// Connects once the previous connection's slot is free (its close is asynchronous).
fn connect_when_free(port: u16) -> TcpStream {
    for _ in 0..100 {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut greeting = [0u8; 18];
        if (&s).read_exact(&mut greeting).is_ok() {
            return s;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("the connection slot never came free");
}
