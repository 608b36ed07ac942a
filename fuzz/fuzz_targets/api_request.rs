//! Fuzz target: untrusted requests into the whole admin API router (every JSON body, query
//! string and path decoder, every validator) on a real catalog; no input may panic or be
//! answered with a 5xx.
#![no_main]

use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::http::Request;
use axum::Router;
use tower::ServiceExt;
use tripod::config::{AuthMode, ServeConfig, Settings};

const ROUTES: [(&str, &str); 28] = [
    ("POST", "/v2/p/volumes"),
    ("GET", "/v2/p/volumes"),
    ("GET", "/v2/p/volumes/detail"),
    ("PUT", "/v2/p/volumes/{v}"),
    ("DELETE", "/v2/p/volumes/{v}"),
    ("POST", "/v2/p/volumes/{v}/action"),
    ("POST", "/v2/p/volumes/{v}/metadata"),
    ("PUT", "/v2/p/volumes/{v}/metadata"),
    ("PUT", "/v2/p/volumes/{v}/metadata/k"),
    ("POST", "/v2/p/snapshots"),
    ("GET", "/v2/p/snapshots/detail"),
    ("PUT", "/v2/p/snapshots/{s}"),
    ("POST", "/v2/p/snapshots/{s}/metadata"),
    ("POST", "/v2/p/cloudsnapshots/{s}/rollback"),
    ("POST", "/v2/p/os-volume-transfer"),
    ("POST", "/v2/p/os-volume-transfer/{v}/accept"),
    ("GET", "/v2/p/os-volume-transfer"),
    ("GET", "/v2/p/os-quota-sets/p"),
    ("PUT", "/v2/p/os-quota-sets/p"),
    ("GET", "/v2/p/types/{v}"),
    ("POST", "/identity/v3/auth/tokens"),
    ("POST", "/identity/v3/projects"),
    ("POST", "/identity/v3/users"),
    ("GET", "/identity/v3/auth/tokens"),
    ("POST", "/v2/p/cloudvolumes/{v}/tags/action"),
    ("POST", "/v2/p/cloudvolumes/resource_instances/action"),
    ("POST", "/v2/p/os-vendor-volumes/{v}/tags/action"),
    ("POST", "/v2/p/os-tripod-volumes/{v}/replicas/1/replace"),
];

struct World {
    rt: tokio::runtime::Runtime,
    router: Router,
    volume: String,
    snapshot: String,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("tripod-fuzz-api-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let quota = [("volumes", 3), ("snapshots", 3), ("gigabytes", 12)]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        let config = ServeConfig::resolve(Settings {
            data_dir: Some(dir),
            auth: Some(AuthMode::Noauth),
            quota: Some(quota),
            ..Default::default()
        })
        .unwrap();
        let state = tripod::daemon::open_state(&config, Some("pw")).unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let router = tripod::api::router(Arc::clone(&state));
        let (volume, snapshot) = rt.block_on(async {
            let v = call(&router, "POST", "/v2/p/volumes", "", br#"{"volume":{"size":1}}"#).await;
            let v: serde_json::Value = serde_json::from_slice(&v).unwrap();
            let id = v["volume"]["id"].as_str().unwrap().to_owned();
            assert!(state.backend.wait_idle(std::time::Duration::from_secs(30)).await);
            let body = format!(r#"{{"snapshot":{{"volume_id":"{id}"}}}}"#);
            let s = call(&router, "POST", "/v2/p/snapshots", "", body.as_bytes()).await;
            let s: serde_json::Value = serde_json::from_slice(&s).unwrap();
            (id, s["snapshot"]["id"].as_str().unwrap().to_owned())
        });
        World { rt, router, volume, snapshot }
    })
}

async fn call(router: &Router, method: &str, path: &str, query: &str, body: &[u8]) -> Vec<u8> {
    let uri = if query.is_empty() { path.to_owned() } else { format!("{path}?{query}") };
    let Ok(req) = Request::builder()
        .method(method)
        .uri(uri)
        .header("x-auth-token", "u:p")
        .header("content-type", "application/json")
        .body(Body::from(body.to_vec()))
    else {
        return Vec::new();
    };
    let resp = router.clone().oneshot(req).await.unwrap();
    assert!(!resp.status().is_server_error(), "{method} {path}: {}", resp.status());
    axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap().to_vec()
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else { return };
    let w = world();
    let (method, template) = ROUTES[usize::from(pick) % ROUTES.len()];
    let path = template.replace("{v}", &w.volume).replace("{s}", &w.snapshot);
    let (query, body) = match rest.iter().position(|b| *b == b'\n') {
        Some(i) => (String::from_utf8_lossy(&rest[..i]).into_owned(), &rest[i + 1..]),
        None => (String::new(), rest),
    };
    w.rt.block_on(call(&w.router, method, &path, &query, body));
});
