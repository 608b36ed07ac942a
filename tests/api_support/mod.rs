//! In-process admin API for handler tests: a real catalog and real replica sets in a
//! temporary data directory, driven through `Router::oneshot`.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;
use tripod::api::{router, ApiState};
use tripod::config::{ServeConfig, Settings};

pub const PASSWORD: &str = "admin-pw";

pub struct Api {
    pub dir: tempfile::TempDir,
    pub state: Arc<ApiState>,
    pub router: Router,
}

pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub raw: Vec<u8>,
    pub body: Value,
}

impl Answer {
    /// The fault object's (name, code, error_code).
    pub fn fault(&self) -> (String, i64, String) {
        let (name, inner) = self
            .body
            .as_object()
            .and_then(|o| o.iter().next())
            .unwrap_or_else(|| panic!("no fault body: {:?}", self.body));
        (
            name.clone(),
            inner["code"].as_i64().unwrap(),
            inner["error_code"].as_str().unwrap_or("").to_owned(),
        )
    }
}

pub struct Login {
    pub token: String,
    pub project: String,
    pub user: String,
}

impl Api {
    pub fn new() -> Self {
        Self::with(Settings::default())
    }

    pub fn with(settings: Settings) -> Self {
        let dir = tempfile::tempdir().unwrap();
        Self::open(dir, settings)
    }

    pub fn open(dir: tempfile::TempDir, settings: Settings) -> Self {
        let settings = Settings {
            data_dir: Some(dir.path().to_path_buf()),
            api_listen: Some("127.0.0.1:8776".into()),
            ..Default::default()
        }
        .over(settings)
        .unwrap();
        let config = ServeConfig::resolve(settings).unwrap();
        let state = tripod::daemon::open_state(&config, Some(PASSWORD)).unwrap();
        let router = router(state.clone());
        Self { dir, state, router }
    }

    pub async fn raw(&self, req: Request<Body>) -> Answer {
        let resp = self.router.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let raw = resp
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec();
        let body = serde_json::from_slice(&raw).unwrap_or(Value::Null);
        Answer {
            status,
            headers,
            raw,
            body,
        }
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Answer {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "127.0.0.1:8776");
        if let Some(t) = token {
            req = req.header("x-auth-token", t);
        }
        let req = match body {
            Some(b) => req
                .header("content-type", "application/json")
                .body(Body::from(serde_json::to_vec(&b).unwrap())),
            None => req.body(Body::empty()),
        }
        .unwrap();
        self.raw(req).await
    }

    pub async fn get(&self, path: &str, token: &str) -> Answer {
        self.call(Method::GET, path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> Answer {
        self.call(Method::POST, path, Some(token), Some(body)).await
    }

    pub async fn put(&self, path: &str, token: &str, body: Value) -> Answer {
        self.call(Method::PUT, path, Some(token), Some(body)).await
    }

    pub async fn delete(&self, path: &str, token: &str) -> Answer {
        self.call(Method::DELETE, path, Some(token), None).await
    }

    pub async fn login(&self, user: &str, password: &str, project: &str) -> Login {
        let a = self
            .call(
                Method::POST,
                "/identity/v3/auth/tokens",
                None,
                Some(password_auth(user, password, project)),
            )
            .await;
        assert_eq!(a.status, StatusCode::CREATED, "{:?}", a.body);
        Login {
            token: a.headers["x-subject-token"].to_str().unwrap().to_owned(),
            project: a.body["token"]["project"]["id"]
                .as_str()
                .unwrap()
                .to_owned(),
            user: a.body["token"]["user"]["id"].as_str().unwrap().to_owned(),
        }
    }

    pub async fn admin(&self) -> Login {
        self.login("admin", PASSWORD, "admin").await
    }

    /// Creates project `name` with user `name` (role `role`) and logs in.
    pub async fn tenant(&self, admin: &Login, name: &str, role: &str) -> Login {
        let p = self
            .post(
                "/identity/v3/projects",
                &admin.token,
                json!({"project": {"name": name}}),
            )
            .await;
        assert_eq!(p.status, StatusCode::CREATED, "{:?}", p.body);
        let pid = p.body["project"]["id"].as_str().unwrap().to_owned();
        let u = self
            .post(
                "/identity/v3/users",
                &admin.token,
                json!({"user": {"name": name, "password": "pw-".to_owned() + name, "default_project_id": pid}}),
            )
            .await;
        assert_eq!(u.status, StatusCode::CREATED, "{:?}", u.body);
        let uid = u.body["user"]["id"].as_str().unwrap().to_owned();
        let g = self
            .call(
                Method::PUT,
                &format!("/identity/v3/projects/{pid}/users/{uid}/roles/{role}"),
                Some(&admin.token),
                None,
            )
            .await;
        assert_eq!(g.status, StatusCode::NO_CONTENT);
        self.login(name, &format!("pw-{name}"), name).await
    }

    /// Waits until `GET path` shows `key.status == status`; returns the object.
    pub async fn wait_status(&self, path: &str, token: &str, key: &str, status: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let a = self.get(path, token).await;
            assert_eq!(a.status, StatusCode::OK, "{path}: {:?}", a.body);
            let st = a.body[key]["status"].as_str().unwrap().to_owned();
            if st == status {
                return a.body[key].clone();
            }
            assert!(!st.starts_with("error"), "{path} went to {st}");
            assert!(Instant::now() < deadline, "{path} stuck in {st}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until `GET path` answers 404.
    pub async fn wait_gone(&self, path: &str, token: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.get(path, token).await.status != StatusCode::NOT_FOUND {
            assert!(Instant::now() < deadline, "{path} never went away");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Creates an available volume; returns its id.
    pub async fn volume(&self, who: &Login, body: Value) -> String {
        let a = self
            .post(
                &format!("/v2/{}/volumes", who.project),
                &who.token,
                json!({ "volume": body }),
            )
            .await;
        assert_eq!(a.status, StatusCode::ACCEPTED, "{:?}", a.body);
        assert_eq!(a.body["volume"]["status"], "creating");
        let id = a.body["volume"]["id"].as_str().unwrap().to_owned();
        self.wait_status(
            &format!("/v2/{}/volumes/{id}", who.project),
            &who.token,
            "volume",
            "available",
        )
        .await;
        id
    }

    /// Takes an available snapshot of `volume`; returns its id.
    pub async fn snapshot(&self, who: &Login, volume: &str) -> String {
        let a = self
            .post(
                &format!("/v2/{}/snapshots", who.project),
                &who.token,
                json!({"snapshot": {"volume_id": volume, "name": "s"}}),
            )
            .await;
        assert_eq!(a.status, StatusCode::ACCEPTED, "{:?}", a.body);
        let id = a.body["snapshot"]["id"].as_str().unwrap().to_owned();
        self.wait_status(
            &format!("/v2/{}/snapshots/{id}", who.project),
            &who.token,
            "snapshot",
            "available",
        )
        .await;
        id
    }

    /// The replica set of volume `id`.
    pub fn set(&self, id: &str) -> Arc<tripod_replication::ReplicaSet> {
        self.state.backend.registry().get(id).unwrap()
    }
}

pub fn password_auth(user: &str, password: &str, project: &str) -> Value {
    json!({"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": user, "domain": {"name": "Default"}, "password": password}}},
        "scope": {"project": {"name": project, "domain": {"id": "default"}}}
    }})
}
