//! A small pipelined NBD client for tests that must know exactly which requests were
//! answered (a kill soak): fixed newstyle, `NBD_OPT_GO`, simple replies; one thread sends,
//! the caller reads replies as they come.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{self, Read, Write};
use std::net::TcpStream;

use tripod::nbd::proto::*;

/// An open connection to one export.
pub struct NbdClient {
    stream: TcpStream,
    /// The export's size in bytes.
    pub size: u64,
}

/// One simple reply.
#[derive(Debug)]
pub struct Reply {
    /// The request's handle.
    pub handle: u64,
    /// 0 or an NBD errno.
    pub error: u32,
}

impl NbdClient {
    /// Connects to `127.0.0.1:port` and opens export `name`.
    pub fn open(port: u16, name: &str) -> io::Result<Self> {
        let mut s = TcpStream::connect(("127.0.0.1", port))?;
        s.set_nodelay(true)?;
        let mut greeting = [0u8; 18];
        s.read_exact(&mut greeting)?;
        if greeting[..8] != NBD_MAGIC.to_be_bytes() {
            return Err(io::Error::other("not an NBD server"));
        }
        s.write_all(&(CLIENT_FIXED_NEWSTYLE | CLIENT_NO_ZEROES).to_be_bytes())?;
        let mut data = (name.len() as u32).to_be_bytes().to_vec();
        data.extend_from_slice(name.as_bytes());
        data.extend_from_slice(&0u16.to_be_bytes());
        s.write_all(&IHAVEOPT.to_be_bytes())?;
        s.write_all(&OPT_GO.to_be_bytes())?;
        s.write_all(&(data.len() as u32).to_be_bytes())?;
        s.write_all(&data)?;
        let mut size = 0;
        loop {
            let mut h = [0u8; 20];
            s.read_exact(&mut h)?;
            let kind = u32::from_be_bytes(h[12..16].try_into().unwrap());
            let len = u32::from_be_bytes(h[16..20].try_into().unwrap());
            let mut body = vec![0u8; len as usize];
            s.read_exact(&mut body)?;
            match kind {
                REP_ACK => break,
                // NBD_INFO_EXPORT: type 0, then the size.
                REP_INFO if body.len() >= 10 && body[..2] == [0, 0] => {
                    size = u64::from_be_bytes(body[2..10].try_into().unwrap());
                }
                REP_INFO => {}
                other => return Err(io::Error::other(format!("GO refused ({other:#x})"))),
            }
        }
        Ok(Self { stream: s, size })
    }

    /// A second handle on the socket, for a thread that reads replies.
    pub fn reader(&self) -> io::Result<TcpStream> {
        self.stream.try_clone()
    }

    /// Sends a request (with `data` for a write).
    pub fn send(
        &mut self,
        kind: u16,
        handle: u64,
        offset: u64,
        len: u32,
        data: Option<&[u8]>,
    ) -> io::Result<()> {
        let mut b = Vec::with_capacity(28 + data.map_or(0, <[u8]>::len));
        b.extend_from_slice(&REQUEST_MAGIC.to_be_bytes());
        b.extend_from_slice(&0u16.to_be_bytes());
        b.extend_from_slice(&kind.to_be_bytes());
        b.extend_from_slice(&handle.to_be_bytes());
        b.extend_from_slice(&offset.to_be_bytes());
        b.extend_from_slice(&len.to_be_bytes());
        if let Some(d) = data {
            b.extend_from_slice(d);
        }
        self.stream.write_all(&b)
    }
}

/// Reads one simple reply (no payload: for requests other than reads).
pub fn read_reply(s: &mut TcpStream) -> io::Result<Reply> {
    let mut h = [0u8; 16];
    s.read_exact(&mut h)?;
    if h[..4] != SIMPLE_REPLY_MAGIC.to_be_bytes() {
        return Err(io::Error::other("bad reply magic"));
    }
    Ok(Reply {
        error: u32::from_be_bytes(h[4..8].try_into().unwrap()),
        handle: u64::from_be_bytes(h[8..16].try_into().unwrap()),
    })
}
