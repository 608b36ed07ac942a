//! The daemon's logs: human lines (coloured on a terminal) or JSON lines on stderr, filtered
//! by `RUST_LOG` (default `info`); and, for `tripod serve`, the audit trail — one JSON line
//! per API request (who, what, which resource, outcome, request id) — also in its own file
//! under the data dir, `audit/audit.log.YYYY-MM-DD`, a new file each day, the last 30 kept.

use std::path::Path;

use tracing_appender::non_blocking::WorkerGuard;
use tracing_appender::rolling::{RollingFileAppender, Rotation};
use tracing_subscriber::filter::{filter_fn, EnvFilter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// The target of audit events.
pub const AUDIT_TARGET: &str = "tripod::audit";

/// Days of audit files kept.
const AUDIT_DAYS: usize = 30;

/// How log lines look on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Lines for a person.
    Text,
    /// One JSON object per line.
    Json,
}

/// Installs the process's logging. With `audit_dir`, audit events also go to daily files
/// there; keep the returned guard until exit (it flushes the file writer).
pub fn init(format: LogFormat, audit_dir: Option<&Path>) -> Result<Option<WorkerGuard>, String> {
    let filter = || EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let stderr = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_filter(filter())
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .with_filter(filter())
            .boxed(),
    };
    let (audit, guard) = match audit_dir {
        None => (None, None),
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("audit log directory {}: {e}", dir.display()))?;
            let appender = RollingFileAppender::builder()
                .rotation(Rotation::DAILY)
                .filename_prefix("audit.log")
                .max_log_files(AUDIT_DAYS)
                .build(dir)
                .map_err(|e| format!("audit log in {}: {e}", dir.display()))?;
            let (writer, guard) = tracing_appender::non_blocking(appender);
            let layer = tracing_subscriber::fmt::layer()
                .json()
                .with_ansi(false)
                .with_writer(writer)
                .with_filter(filter_fn(|m| m.target() == AUDIT_TARGET));
            (Some(layer), Some(guard))
        }
    };
    tracing_subscriber::registry()
        .with(stderr)
        .with(audit)
        .try_init()
        .map_err(|e| format!("logging: {e}"))?;
    Ok(guard)
}
