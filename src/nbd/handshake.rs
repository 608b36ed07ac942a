//! Fixed-newstyle negotiation: greeting, then options until the client picks an export
//! (NBD_OPT_GO or NBD_OPT_EXPORT_NAME) or leaves. Unknown or malformed options get the
//! protocol's error reply and negotiation goes on; only a broken framing (bad magic, an
//! unknown client flag, an unknown export named by NBD_OPT_EXPORT_NAME) ends the connection.

use std::io;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::device::{Export, Exports};
use super::proto::*;

/// Largest option payload ever read and thrown away (larger ones end the connection):
/// bounds the time a client can make the server spend on a refused option.
const MAX_DISCARD: u32 = 16 << 20;

/// Block size limits advertised with NBD_INFO_BLOCK_SIZE.
#[derive(Debug, Clone, Copy)]
pub struct BlockSizes {
    /// Smallest request granularity (any byte works: partial blocks are read-modify-write).
    pub minimum: u32,
    /// Preferred granularity (the engine's block).
    pub preferred: u32,
    /// Largest READ/WRITE payload accepted.
    pub maximum: u32,
}

/// What negotiation settled.
pub struct Session {
    /// The export's name (volume id).
    pub name: String,
    /// The export.
    pub export: Export,
    /// Structured replies were negotiated.
    pub structured: bool,
    /// `base:allocation` was selected for this export.
    pub base_allocation: bool,
}

/// Transmission flags of an export.
pub fn transmission_flags(export: &Export) -> u16 {
    let mut f = TF_HAS_FLAGS
        | TF_SEND_FLUSH
        | TF_SEND_FUA
        | TF_SEND_TRIM
        | TF_SEND_WRITE_ZEROES
        | TF_SEND_FAST_ZERO
        | TF_SEND_DF
        | TF_CAN_MULTI_CONN;
    if export.read_only {
        f |= TF_READ_ONLY;
    }
    f
}

async fn reply<S: AsyncWrite + Unpin>(
    s: &mut S,
    option: u32,
    kind: u32,
    data: &[u8],
) -> io::Result<()> {
    let len = u32::try_from(data.len()).map_err(|_| io::Error::other("option reply too long"))?;
    s.write_all(&option_reply(option, kind, len)).await?;
    s.write_all(data).await
}

/// Looks an export up off the async threads (opening a volume reads and may repair disks).
async fn lookup(exports: &Arc<dyn Exports>, name: &str) -> Option<Export> {
    let (exports, name) = (exports.clone(), name.to_owned());
    tokio::task::spawn_blocking(move || exports.lookup(&name))
        .await
        .ok()
        .flatten()
}

/// Runs negotiation; `Ok(None)` when the client aborted or named nothing usable.
pub async fn negotiate<S>(
    s: &mut S,
    exports: &Arc<dyn Exports>,
    sizes: BlockSizes,
) -> io::Result<Option<Session>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    s.write_all(&NBD_MAGIC.to_be_bytes()).await?;
    s.write_all(&IHAVEOPT.to_be_bytes()).await?;
    s.write_all(&(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES).to_be_bytes())
        .await?;
    s.flush().await?;
    let client_flags = s.read_u32().await?;
    if client_flags & !(CLIENT_FIXED_NEWSTYLE | CLIENT_NO_ZEROES) != 0 {
        return Ok(None); // unknown client flags: the spec says to drop the connection
    }
    let no_zeroes = client_flags & CLIENT_NO_ZEROES != 0;
    let mut structured = false;
    let mut selected: Option<(String, bool)> = None;
    loop {
        if s.read_u64().await? != IHAVEOPT {
            return Ok(None);
        }
        let option = s.read_u32().await?;
        let len = s.read_u32().await?;
        if len > MAX_OPTION_LEN {
            if len > MAX_DISCARD {
                return Ok(None);
            }
            tokio::io::copy(&mut (&mut *s).take(u64::from(len)), &mut tokio::io::sink()).await?;
            reply(s, option, REP_ERR_TOO_BIG, b"option data too large").await?;
            continue;
        }
        let mut data = vec![0u8; len as usize];
        s.read_exact(&mut data).await?;
        match option {
            OPT_EXPORT_NAME => {
                let name = String::from_utf8_lossy(&data).into_owned();
                let Some(export) = lookup(exports, &name).await else {
                    return Ok(None); // this option has no error reply: close
                };
                s.write_all(&export.device.size().to_be_bytes()).await?;
                s.write_all(&transmission_flags(&export).to_be_bytes())
                    .await?;
                if !no_zeroes {
                    s.write_all(&[0u8; 124]).await?;
                }
                s.flush().await?;
                return Ok(Some(session(name, export, structured, &selected)));
            }
            OPT_ABORT => {
                reply(s, option, REP_ACK, &[]).await?;
                s.flush().await?;
                return Ok(None);
            }
            OPT_LIST if len != 0 => {
                reply(s, option, REP_ERR_INVALID, b"LIST takes no data").await?
            }
            OPT_LIST => {
                let names = {
                    let exports = exports.clone();
                    tokio::task::spawn_blocking(move || exports.names())
                        .await
                        .unwrap_or_default()
                };
                for name in names {
                    let Ok(len) = u32::try_from(name.len()) else {
                        continue;
                    };
                    let mut d = len.to_be_bytes().to_vec();
                    d.extend_from_slice(name.as_bytes());
                    reply(s, option, REP_SERVER, &d).await?;
                }
                reply(s, option, REP_ACK, &[]).await?;
            }
            OPT_INFO | OPT_GO => {
                let Some((name, infos)) = parse_go(&data) else {
                    reply(s, option, REP_ERR_INVALID, b"malformed request").await?;
                    continue;
                };
                let Some(export) = lookup(exports, &name).await else {
                    reply(s, option, REP_ERR_UNKNOWN, b"no such export").await?;
                    continue;
                };
                send_info(s, option, &name, &export, &infos, sizes).await?;
                reply(s, option, REP_ACK, &[]).await?;
                if option == OPT_GO {
                    s.flush().await?;
                    return Ok(Some(session(name, export, structured, &selected)));
                }
            }
            OPT_STRUCTURED_REPLY if len != 0 => {
                reply(s, option, REP_ERR_INVALID, b"takes no data").await?
            }
            OPT_STRUCTURED_REPLY => {
                structured = true;
                reply(s, option, REP_ACK, &[]).await?;
            }
            OPT_LIST_META_CONTEXT | OPT_SET_META_CONTEXT => {
                let set = option == OPT_SET_META_CONTEXT;
                if set && !structured {
                    reply(s, option, REP_ERR_INVALID, b"structured replies first").await?;
                    continue;
                }
                let Some((name, queries)) = parse_meta_context(&data) else {
                    reply(s, option, REP_ERR_INVALID, b"malformed request").await?;
                    continue;
                };
                if lookup(exports, &name).await.is_none() {
                    reply(s, option, REP_ERR_UNKNOWN, b"no such export").await?;
                    continue;
                }
                let matches = if set {
                    queries.iter().any(|q| q == BASE_ALLOCATION)
                } else {
                    queries.is_empty()
                        || queries.iter().any(|q| q == "base:" || q == BASE_ALLOCATION)
                };
                if matches {
                    let mut d = BASE_ALLOCATION_ID.to_be_bytes().to_vec();
                    d.extend_from_slice(BASE_ALLOCATION.as_bytes());
                    reply(s, option, REP_META_CONTEXT, &d).await?;
                }
                if set {
                    selected = Some((name, matches));
                }
                reply(s, option, REP_ACK, &[]).await?;
            }
            _ => reply(s, option, REP_ERR_UNSUP, b"option not supported").await?,
        }
        s.flush().await?;
    }
}

/// The session for export `name`; `base:allocation` counts only if it was selected for
/// that same export.
fn session(
    name: String,
    export: Export,
    structured: bool,
    selected: &Option<(String, bool)>,
) -> Session {
    let base_allocation = selected.as_ref().is_some_and(|(n, b)| *n == name && *b);
    Session {
        name,
        export,
        structured,
        base_allocation,
    }
}

async fn send_info<S: AsyncWrite + Unpin>(
    s: &mut S,
    option: u32,
    name: &str,
    export: &Export,
    requested: &[u16],
    sizes: BlockSizes,
) -> io::Result<()> {
    let mut info = INFO_EXPORT.to_be_bytes().to_vec();
    info.extend_from_slice(&export.device.size().to_be_bytes());
    info.extend_from_slice(&transmission_flags(export).to_be_bytes());
    reply(s, option, REP_INFO, &info).await?;
    // Block sizes are always sent: clients that honour them send nothing over the maximum.
    let mut bs = INFO_BLOCK_SIZE.to_be_bytes().to_vec();
    for v in [sizes.minimum, sizes.preferred, sizes.maximum] {
        bs.extend_from_slice(&v.to_be_bytes());
    }
    reply(s, option, REP_INFO, &bs).await?;
    if requested.contains(&INFO_NAME) {
        let mut d = INFO_NAME.to_be_bytes().to_vec();
        d.extend_from_slice(name.as_bytes());
        reply(s, option, REP_INFO, &d).await?;
    }
    Ok(())
}
