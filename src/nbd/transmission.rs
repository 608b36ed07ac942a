//! The transmission phase: requests are read, validated (before anything runs), executed
//! concurrently off the async threads, and answered as they complete — out of order, each
//! matched by its handle. In-flight payload bytes are capped (backpressure), an idle
//! connection is closed, and a shutdown stops reading and drains what is in flight.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use super::device::{BlockDevice, DeviceError, Run};
use super::handshake::Session;
use super::proto::{errno, *};

/// Limits of one connection.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest READ/WRITE payload (advertised as the maximum block size).
    pub max_payload: u32,
    /// Payload bytes in flight per connection before the server stops reading requests.
    pub max_in_flight: u32,
    /// Close a connection with no request for this long.
    pub idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_payload: 32 << 20,
            max_in_flight: 64 << 20,
            idle_timeout: Duration::from_secs(600),
        }
    }
}

/// Bytes per semaphore permit for the in-flight cap.
const PERMIT_BYTES: u32 = 4096;

/// Maps a device failure to the NBD error for command `kind` (the one place this happens).
pub fn nbd_errno(kind: u16, e: &DeviceError) -> u32 {
    match e {
        DeviceError::OutOfRange if matches!(kind, CMD_WRITE | CMD_WRITE_ZEROES) => errno::ENOSPC,
        DeviceError::OutOfRange | DeviceError::Invalid(_) => errno::EINVAL,
        DeviceError::Io(_) => errno::EIO,
        DeviceError::NoSpace(_) => errno::ENOSPC,
        DeviceError::ReadOnly => errno::EPERM,
    }
}

/// A reply, as the byte pieces to write in order.
type Reply = Vec<Bytes>;

fn simple(handle: u64, error: u32, data: Option<Bytes>) -> Reply {
    let mut r = vec![Bytes::copy_from_slice(&simple_reply(handle, error))];
    r.extend(data);
    r
}

fn error_reply(session: &Session, req: &Request, error: u32, msg: &str) -> Reply {
    if session.structured && matches!(req.kind, CMD_READ | CMD_BLOCK_STATUS) {
        // Our messages are short; one that is not is sent without its text.
        let msg = if u16::try_from(msg.len()).is_ok() {
            msg
        } else {
            ""
        };
        let mut payload = error.to_be_bytes().to_vec();
        payload.extend_from_slice(&u16::try_from(msg.len()).unwrap_or(0).to_be_bytes());
        payload.extend_from_slice(msg.as_bytes());
        let header = chunk_header(
            req.handle,
            REPLY_FLAG_DONE,
            REPLY_TYPE_ERROR,
            payload_len(&payload),
        );
        vec![Bytes::copy_from_slice(&header), Bytes::from(payload)]
    } else {
        simple(req.handle, error, None)
    }
}

/// Checks a request before anything runs; `Err((errno, why))` is answered without running.
fn validate(
    req: &Request,
    session: &Session,
    size: u64,
    limits: &Limits,
) -> Result<(), (u32, &'static str)> {
    let allowed = match req.kind {
        CMD_READ => CMD_FLAG_DF | CMD_FLAG_FUA,
        CMD_WRITE => CMD_FLAG_FUA,
        CMD_FLUSH => 0,
        CMD_TRIM => CMD_FLAG_FUA,
        CMD_WRITE_ZEROES => CMD_FLAG_FUA | CMD_FLAG_NO_HOLE | CMD_FLAG_FAST_ZERO,
        CMD_BLOCK_STATUS => CMD_FLAG_REQ_ONE,
        _ => return Err((errno::EINVAL, "unknown command")),
    };
    if req.flags & !allowed != 0 {
        return Err((errno::EINVAL, "unknown or invalid flags"));
    }
    if req.kind == CMD_FLUSH {
        return if req.offset == 0 && req.len == 0 {
            Ok(())
        } else {
            Err((errno::EINVAL, "flush takes no range"))
        };
    }
    let writes = matches!(req.kind, CMD_WRITE | CMD_WRITE_ZEROES | CMD_TRIM);
    if writes && session.export.read_only {
        return Err((errno::EPERM, "read-only export"));
    }
    if req.len == 0 {
        return Err((errno::EINVAL, "zero length"));
    }
    if matches!(req.kind, CMD_READ | CMD_WRITE) && req.len > limits.max_payload {
        return Err((
            errno::EOVERFLOW,
            "request larger than the maximum block size",
        ));
    }
    if req.kind == CMD_BLOCK_STATUS && !session.base_allocation {
        return Err((errno::EINVAL, "no metadata context negotiated"));
    }
    if req
        .offset
        .checked_add(u64::from(req.len))
        .is_none_or(|end| end > size)
    {
        let e = if matches!(req.kind, CMD_WRITE | CMD_WRITE_ZEROES) {
            errno::ENOSPC
        } else {
            errno::EINVAL
        };
        return Err((e, "out of range"));
    }
    Ok(())
}

/// Runs one validated request on the device.
async fn execute(
    device: Arc<dyn BlockDevice>,
    session: &Session,
    req: &Request,
    payload: Option<Bytes>,
) -> Reply {
    let fail = |e: DeviceError| {
        tracing::warn!(export = %session.name, "request {} failed: {e}", req.kind);
        error_reply(session, req, nbd_errno(req.kind, &e), &e.to_string())
    };
    let done = |r: Result<(), DeviceError>| r.map_or_else(fail, |()| simple(req.handle, 0, None));
    match req.kind {
        CMD_READ => match device.read_async(req.offset, req.len).await {
            Ok(data) if session.structured => {
                let header = chunk_header(
                    req.handle,
                    REPLY_FLAG_DONE,
                    REPLY_TYPE_OFFSET_DATA,
                    req.len + 8,
                );
                vec![
                    Bytes::copy_from_slice(&header),
                    Bytes::copy_from_slice(&req.offset.to_be_bytes()),
                    data,
                ]
            }
            Ok(data) => simple(req.handle, 0, Some(data)),
            Err(e) => fail(e),
        },
        CMD_WRITE => {
            let data = payload.unwrap_or_default();
            let written = device.clone().write_async(req.offset, data).await;
            done(fua(device, req, written).await)
        }
        CMD_FLUSH => done(device.flush_async().await),
        CMD_TRIM => {
            let trimmed = device.clone().trim_async(req.offset, req.len).await;
            done(fua(device, req, trimmed).await)
        }
        CMD_WRITE_ZEROES => {
            let punch = req.flags & CMD_FLAG_NO_HOLE == 0;
            let zeroed = device
                .clone()
                .write_zeroes_async(req.offset, req.len, punch)
                .await;
            done(fua(device, req, zeroed).await)
        }
        CMD_BLOCK_STATUS => match device.allocation_async(req.offset, req.len).await {
            Ok(runs) => block_status(req, &runs),
            Err(e) => fail(e),
        },
        _ => error_reply(session, req, errno::EINVAL, "unknown command"),
    }
}

/// A write with FUA is durable before its reply: after it succeeded, the device flushes
/// (which covers it).
async fn fua(
    device: Arc<dyn BlockDevice>,
    req: &Request,
    written: Result<(), DeviceError>,
) -> Result<(), DeviceError> {
    written?;
    if req.flags & CMD_FLAG_FUA != 0 {
        device.flush_async().await
    } else {
        Ok(())
    }
}

/// A reply payload's length (payloads are built here and stay far below 4 GiB).
fn payload_len(payload: &[u8]) -> u32 {
    u32::try_from(payload.len()).unwrap_or(u32::MAX)
}

fn block_status(req: &Request, runs: &[Run]) -> Reply {
    let mut payload = BASE_ALLOCATION_ID.to_be_bytes().to_vec();
    let one = req.flags & CMD_FLAG_REQ_ONE != 0;
    for run in runs.iter().filter(|r| r.len > 0) {
        let len = u32::try_from(run.len).unwrap_or(u32::MAX);
        let flags = if run.data { 0 } else { STATE_HOLE | STATE_ZERO };
        payload.extend_from_slice(&len.to_be_bytes());
        payload.extend_from_slice(&flags.to_be_bytes());
        if one {
            break;
        }
    }
    let header = chunk_header(
        req.handle,
        REPLY_FLAG_DONE,
        REPLY_TYPE_BLOCK_STATUS,
        payload_len(&payload),
    );
    vec![Bytes::copy_from_slice(&header), Bytes::from(payload)]
}

/// A future whose panic becomes `None` (the request is answered with EIO and the connection
/// goes on), as `catch_unwind` does for a closure.
struct CatchUnwind<F>(std::pin::Pin<Box<F>>);

impl<F: std::future::Future> std::future::Future for CatchUnwind<F> {
    type Output = Option<F::Output>;
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let inner = self.0.as_mut();
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(std::task::Poll::Ready(v)) => std::task::Poll::Ready(Some(v)),
            Ok(std::task::Poll::Pending) => std::task::Poll::Pending,
            Err(_) => std::task::Poll::Ready(None),
        }
    }
}

/// Reads and throws away `len` payload bytes without buffering them.
async fn discard<R: AsyncRead + Unpin>(r: &mut R, len: u32) -> io::Result<()> {
    let copied = tokio::io::copy(&mut r.take(u64::from(len)), &mut tokio::io::sink()).await?;
    if copied < u64::from(len) {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(())
}

/// Bytes of requests read from the socket at once: a client's queue of requests (28-byte
/// headers, small write payloads) arrives with one `recv` instead of one or two per request.
const READ_BUFFER: usize = 64 << 10;

/// Largest READ answered on the connection's own task when its data is at hand (see
/// [`serve`]); larger reads run on their own task so several proceed in parallel.
const INLINE_READ_MAX: u32 = 64 << 10;

/// Replies on their way to the socket with the in-flight permits of their requests: a
/// request counts against the connection's cap until its reply is written, so a client
/// that stops reading stops the server reading its requests rather than growing the
/// replies held for it.
#[derive(Default)]
struct Outgoing {
    pieces: Reply,
    permits: Vec<OwnedSemaphorePermit>,
}

impl Outgoing {
    fn add(&mut self, reply: Reply, permit: OwnedSemaphorePermit) {
        self.pieces.extend(reply);
        self.permits.push(permit);
    }
}

/// Serves requests until the client disconnects, sends garbage, idles out, or `shutdown`.
///
/// A READ whose data is at hand (the device answers it on the first poll: cached data) is
/// answered right here, and such answers are gathered until the client's queued requests
/// are all read, then go to the writer together (one wake-up, one `send` for the batch).
/// Everything else runs on a task of its own and is answered when it completes.
pub async fn serve<R, W>(
    reader: R,
    writer: W,
    session: Session,
    limits: Limits,
    mut shutdown: watch::Receiver<bool>,
) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let mut reader = tokio::io::BufReader::with_capacity(READ_BUFFER, reader);
    let session = Arc::new(session);
    let (tx, mut rx) = mpsc::channel::<Outgoing>(1024);
    let writer_task = tokio::spawn(async move {
        let mut w = tokio::io::BufWriter::with_capacity(256 << 10, writer);
        while let Some(out) = rx.recv().await {
            for piece in out.pieces {
                w.write_all(&piece).await?;
            }
            // Written (or in the writer's bounded buffer): the requests stop counting.
            drop(out.permits);
            if rx.is_empty() {
                w.flush().await?;
            }
        }
        w.flush().await?;
        io::Result::Ok(())
    });
    let permits = Arc::new(Semaphore::new(
        (limits.max_in_flight / PERMIT_BYTES).max(1) as usize
    ));
    let max_permits = (limits.max_in_flight / PERMIT_BYTES).max(1);
    let mut tasks = JoinSet::new();
    // Replies answered on this task, not yet handed to the writer (in answer order).
    let mut answered = Outgoing::default();
    let result = loop {
        // Before waiting for the client, hand over what is answered: the client may be
        // waiting for it before it sends more.
        if reader.buffer().len() < REQUEST_LEN
            && !answered.pieces.is_empty()
            && tx.send(std::mem::take(&mut answered)).await.is_err()
        {
            break Ok(());
        }
        let mut header = [0u8; REQUEST_LEN];
        let read = tokio::select! {
            r = tokio::time::timeout(limits.idle_timeout, reader.read_exact(&mut header)) => r,
            _ = shutdown.wait_for(|s| *s) => break Ok(()),
        };
        match read {
            Err(_) => break Ok(()), // idle
            Ok(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => break Ok(()),
            Ok(Err(e)) => break Err(e),
            Ok(Ok(_)) => {}
        }
        let Some(req) = Request::decode(&header) else {
            tracing::warn!(export = %session.name, "bad request magic; closing");
            break Ok(());
        };
        if req.kind == CMD_DISC {
            break Ok(());
        }
        while tasks.try_join_next().is_some() {}
        let size = session.export.device.size();
        let verdict = validate(&req, &session, size, &limits);
        let wants = match req.kind {
            CMD_READ | CMD_WRITE if verdict.is_ok() => {
                req.len.div_ceil(PERMIT_BYTES).clamp(1, max_permits)
            }
            _ => 1,
        };
        let permit = match permits.clone().try_acquire_many_owned(wants) {
            Ok(p) => p,
            Err(_) => {
                // Over the in-flight cap: what is answered here must not wait behind it.
                if !answered.pieces.is_empty()
                    && tx.send(std::mem::take(&mut answered)).await.is_err()
                {
                    break Ok(());
                }
                let Ok(p) = permits.clone().acquire_many_owned(wants).await else {
                    break Ok(());
                };
                p
            }
        };
        let mut payload = None;
        if req.kind == CMD_WRITE {
            if reader.buffer().len() < req.len as usize
                && !answered.pieces.is_empty()
                && tx.send(std::mem::take(&mut answered)).await.is_err()
            {
                break Ok(());
            }
            if verdict.is_ok() {
                let mut buf = BytesMut::zeroed(req.len as usize);
                if let Err(e) = reader.read_exact(&mut buf).await {
                    break Err(e);
                }
                payload = Some(buf.freeze());
            } else if let Err(e) = discard(&mut reader, req.len).await {
                break Err(e);
            }
        }
        if let Err((error, why)) = verdict {
            answered.add(error_reply(&session, &req, error, why), permit);
            continue;
        }
        let device = session.export.device.clone();
        let mut run = {
            let session = session.clone();
            CatchUnwind(Box::pin(async move {
                execute(device, &session, &req, payload).await
            }))
        };
        if req.kind == CMD_READ && req.len <= INLINE_READ_MAX {
            // One poll: cached data is answered now; anything that must wait (the disk,
            // a lock) goes on below as a task of its own, which polls it again with a
            // real waker.
            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
            if let std::task::Poll::Ready(reply) =
                std::future::Future::poll(std::pin::Pin::new(&mut run), &mut cx)
            {
                let reply = reply
                    .unwrap_or_else(|| error_reply(&session, &req, errno::EIO, "internal error"));
                answered.add(reply, permit);
                continue;
            }
        }
        let (session, tx) = (session.clone(), tx.clone());
        tasks.spawn(async move {
            let reply = run
                .await
                .unwrap_or_else(|| error_reply(&session, &req, errno::EIO, "internal error"));
            let mut out = Outgoing::default();
            out.add(reply, permit);
            let _ = tx.send(out).await;
        });
    };
    if !answered.pieces.is_empty() {
        let _ = tx.send(answered).await;
    }
    // Drain: every accepted request gets its answer before the connection closes.
    while tasks.join_next().await.is_some() {}
    drop(tx);
    let written = writer_task
        .await
        .unwrap_or_else(|e| Err(io::Error::other(e)));
    result.and(written)
}
