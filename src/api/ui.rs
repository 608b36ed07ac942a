//! `GET /ui`: the status page a person on call opens in a browser — every volume with its
//! replicas' health (resync and rebuild progress with an ETA), snapshots, last scrub and live
//! IOPS, MiB/s and latency charts from the per-volume metrics, with the two actions needed
//! in a hurry (scrub a volume, replace a replica). Read-only otherwise.
//!
//! The page and its script are built into the binary (no build step, nothing fetched from
//! elsewhere: the Content-Security-Policy allows this origin only). It needs no access of
//! its own: it logs in with Keystone (or a token) and calls the admin API like any client,
//! so what it shows and does is what that user may.

use axum::http::header;
use axum::response::{IntoResponse, Response};

const PAGE: &str = include_str!("ui/index.html");
const SCRIPT: &str = include_str!("ui/app.js");

/// Only this origin: the page's own script and styles, API calls to the daemon.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
                   img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'";

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// `GET /ui`: the page.
pub async fn page() -> Response {
    asset("text/html; charset=utf-8", PAGE)
}

/// `GET /ui/app.js`: its script.
pub async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}
