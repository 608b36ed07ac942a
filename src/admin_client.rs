//! The admin commands' client side: log in to a running daemon with the standard `OS_*`
//! variables (as the `openstack` CLI does), fetch what an admin endpoint answers, and render
//! it for a person or a script.

use serde_json::{json, Value};

/// Why an admin command could not talk to the daemon.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// A required `OS_*` variable is missing.
    #[error("{0} is not set (the same OS_* variables as the openstack CLI)")]
    MissingVariable(&'static str),
    /// The daemon could not be reached or answered an error.
    #[error("{url}: {message}")]
    Http {
        /// What was asked.
        url: String,
        /// What went wrong.
        message: String,
        /// The HTTP status, when the daemon answered with an error.
        status: Option<u16>,
    },
    /// The answer was not what the API documents.
    #[error("unexpected answer from {0}")]
    Unexpected(String),
}

/// The credentials of an admin command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// `OS_AUTH_URL`, e.g. `http://127.0.0.1:8776/identity/v3`.
    pub auth_url: String,
    /// `OS_USERNAME`.
    pub username: String,
    /// `OS_PASSWORD`.
    pub password: String,
    /// `OS_PROJECT_NAME`.
    pub project: String,
    /// `OS_USER_DOMAIN_NAME` (default `Default`).
    pub user_domain: String,
    /// `OS_PROJECT_DOMAIN_NAME` (default `Default`).
    pub project_domain: String,
}

impl Credentials {
    /// From the `OS_*` variables, read through `var`.
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<Self, ClientError> {
        let need = |k: &'static str| var(k).ok_or(ClientError::MissingVariable(k));
        Ok(Self {
            auth_url: need("OS_AUTH_URL")?.trim_end_matches('/').to_owned(),
            username: need("OS_USERNAME")?,
            password: need("OS_PASSWORD")?,
            project: need("OS_PROJECT_NAME")?,
            user_domain: var("OS_USER_DOMAIN_NAME").unwrap_or_else(|| "Default".into()),
            project_domain: var("OS_PROJECT_DOMAIN_NAME").unwrap_or_else(|| "Default".into()),
        })
    }
}

/// A logged-in session: the token and the block-storage endpoint of its project.
#[derive(Debug, Clone)]
pub struct Session {
    token: String,
    /// `…/v3/{project_id}` from the token's catalog.
    pub endpoint: String,
}

fn http_error(url: &str, e: ureq::Error) -> ClientError {
    let status = match &e {
        ureq::Error::Status(code, _) => Some(*code),
        _ => None,
    };
    let message = match e {
        ureq::Error::Status(code, resp) => {
            let body = resp.into_string().unwrap_or_default();
            let detail = serde_json::from_str::<Value>(&body)
                .ok()
                .and_then(|v| {
                    v.as_object()?
                        .values()
                        .next()?
                        .get("message")?
                        .as_str()
                        .map(str::to_owned)
                })
                .unwrap_or(body);
            format!("HTTP {code}: {detail}")
        }
        other => other.to_string(),
    };
    ClientError::Http {
        url: url.to_owned(),
        message,
        status,
    }
}

impl ClientError {
    /// The daemon answered and refused the request (a 4xx: bad input, a state that does
    /// not allow it), as opposed to not being reachable or failing.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            ClientError::Http {
                status: Some(400..=499),
                ..
            }
        )
    }
}

/// The public block-storage endpoint in a Keystone token body.
fn block_storage_endpoint(token: &Value) -> Option<String> {
    at(token, "/token/catalog")
        .as_array()?
        .iter()
        .filter(|s| matches!(at(s, "/type").as_str(), Some("block-storage" | "volumev3")))
        .flat_map(|s| at(s, "/endpoints").as_array().cloned().unwrap_or_default())
        .find(|e| at(e, "/interface") == "public")
        .and_then(|e| {
            at(&e, "/url")
                .as_str()
                .map(|u| u.trim_end_matches('/').to_owned())
        })
}

impl Session {
    /// Logs in with password credentials scoped to the project.
    pub fn login(c: &Credentials) -> Result<Self, ClientError> {
        let url = format!("{}/auth/tokens", c.auth_url);
        let body = json!({"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": c.username, "domain": {"name": c.user_domain}, "password": c.password}}},
            "scope": {"project": {"name": c.project, "domain": {"name": c.project_domain}}}}});
        let resp = ureq::post(&url)
            .send_json(body)
            .map_err(|e| http_error(&url, e))?;
        let token = resp
            .header("X-Subject-Token")
            .map(str::to_owned)
            .ok_or_else(|| ClientError::Unexpected(url.clone()))?;
        let value: Value = resp
            .into_json()
            .map_err(|_| ClientError::Unexpected(url.clone()))?;
        let endpoint = block_storage_endpoint(&value).ok_or(ClientError::Unexpected(url))?;
        Ok(Self { token, endpoint })
    }

    /// Logs in with this process's `OS_*` variables.
    pub fn from_env() -> Result<Self, ClientError> {
        Self::login(&Credentials::from_env(|k| std::env::var(k).ok())?)
    }

    /// `POST {endpoint}/{path}` with an empty JSON body, as JSON.
    pub fn post(&self, path: &str) -> Result<Value, ClientError> {
        let url = format!("{}/{path}", self.endpoint);
        ureq::post(&url)
            .set("X-Auth-Token", &self.token)
            .send_json(json!({}))
            .map_err(|e| http_error(&url, e))?
            .into_json()
            .map_err(|_| ClientError::Unexpected(url))
    }

    /// `POST {endpoint}/{path}` with `body`, as JSON.
    pub fn post_json(&self, path: &str, body: &Value) -> Result<Value, ClientError> {
        let url = format!("{}/{path}", self.endpoint);
        ureq::post(&url)
            .set("X-Auth-Token", &self.token)
            .send_json(body)
            .map_err(|e| http_error(&url, e))?
            .into_json()
            .map_err(|_| ClientError::Unexpected(url))
    }

    /// `GET {endpoint}/{path}` as JSON.
    pub fn get(&self, path: &str) -> Result<Value, ClientError> {
        let url = format!("{}/{path}", self.endpoint);
        ureq::get(&url)
            .set("X-Auth-Token", &self.token)
            .call()
            .map_err(|e| http_error(&url, e))?
            .into_json()
            .map_err(|_| ClientError::Unexpected(url))
    }
}

/// The member at JSON `pointer` of `v` (`null` when absent).
fn at<'a>(v: &'a Value, pointer: &str) -> &'a Value {
    v.pointer(pointer).unwrap_or(&Value::Null)
}

/// One replica's health as a table cell: `ok`, `out (N chunks)`, `rebuild`, `resync 40%`.
fn health_cell(r: &Value) -> String {
    let pct = || {
        let done = at(r, "/done").as_u64().unwrap_or(0);
        let total = at(r, "/total").as_u64().unwrap_or(0).max(1);
        done.saturating_mul(100) / total
    };
    match at(r, "/health").as_str() {
        Some("in_service") => "ok".into(),
        Some("degraded") if at(r, "/needs_rebuild") == true => "out (rebuild)".into(),
        Some("degraded") => format!("out ({} chunks)", at(r, "/missing_chunks")),
        Some("resyncing") => format!("resync {}%", pct()),
        Some("rebuilding") => format!("rebuild {}%", pct()),
        _ => "?".into(),
    }
}

/// The answer of `os-tripod-status` as a table: one row per volume, one column per replica.
pub fn status_table(status: &Value) -> String {
    let mut rows = vec![[
        "VOLUME".to_owned(),
        "NAME".to_owned(),
        "STATUS".to_owned(),
        "GiB".to_owned(),
        "REPLICA 0".to_owned(),
        "REPLICA 1".to_owned(),
        "REPLICA 2".to_owned(),
        "REPAIRS".to_owned(),
    ]];
    for v in at(status, "/volumes").as_array().into_iter().flatten() {
        let replicas: Vec<String> = match at(v, "/replicas").as_array() {
            Some(r) => r.iter().map(health_cell).collect(),
            None => vec!["(closed)".into(); 3],
        };
        let cell = |i: usize| replicas.get(i).cloned().unwrap_or_default();
        rows.push([
            at(v, "/id").as_str().unwrap_or_default().to_owned(),
            at(v, "/name").as_str().unwrap_or("-").to_owned(),
            at(v, "/status").as_str().unwrap_or_default().to_owned(),
            at(v, "/size").to_string(),
            cell(0),
            cell(1),
            cell(2),
            at(v, "/repairs")
                .as_u64()
                .map_or("-".into(), |n| n.to_string()),
        ]);
    }
    let widths: Vec<usize> = (0..8)
        .map(|c| {
            rows.iter()
                .map(|r| r.get(c).map_or(0, |x| x.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in &rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(x, w)| format!("{x:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    let s = at(status, "/summary");
    out.push_str(&format!(
        "{} volumes, {} open, {} with a replica out of service\n",
        at(s, "/volumes"),
        at(s, "/open"),
        at(s, "/degraded")
    ));
    out
}

/// The exit code of `tripod status`: 0 when every open volume has all three replicas in
/// service, 1 when one does not (scripts alert on it); errors exit 2.
pub fn status_exit_code(status: &Value) -> i32 {
    match at(status, "/summary/degraded").as_u64() {
        Some(0) => 0,
        _ => 1,
    }
}

/// The latest scrub of `volume` in an `os-tripod-status` answer.
pub fn last_scrub(status: &Value, volume: &str) -> Option<Value> {
    at(status, "/volumes")
        .as_array()?
        .iter()
        .find(|v| at(v, "/id") == volume)
        .map(|v| at(v, "/last_scrub").clone())
}

/// A finished scrub as one line for a person.
pub fn scrub_line(volume: &str, scrub: &Value) -> String {
    match at(scrub, "/state").as_str() {
        Some("done") => format!(
            "{volume}: {} blocks checked, {} bad, {} repaired, {} unrepairable",
            at(scrub, "/blocks_checked"),
            at(scrub, "/bad"),
            at(scrub, "/repaired"),
            at(scrub, "/unrepairable")
        ),
        Some("failed") => format!("{volume}: scrub failed: {}", at(scrub, "/error")),
        _ => format!("{volume}: scrub {scrub}"),
    }
}

/// The exit code of `tripod scrub`: 0 when every copy is good now (bad ones repaired), 1 when
/// a block has no good copy anywhere or the scrub failed.
pub fn scrub_exit_code(scrub: &Value) -> i32 {
    match (
        at(scrub, "/state").as_str(),
        at(scrub, "/unrepairable").as_u64(),
    ) {
        (Some("done"), Some(0)) => 0,
        _ => 1,
    }
}

/// Replica `slot` of `volume` in an `os-tripod-status` answer (`None`: the volume is not
/// there or not open).
pub fn replica_of(status: &Value, volume: &str, slot: usize) -> Option<Value> {
    at(status, "/volumes")
        .as_array()?
        .iter()
        .find(|v| at(v, "/id") == volume)?
        .get("replicas")?
        .as_array()?
        .iter()
        .find(|r| at(r, "/slot").as_u64() == Some(slot as u64))
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Value {
        json!({
            "volumes": [
                {"id": "v1", "name": "db", "status": "in-use", "size": 10, "open": true,
                 "repairs": 2, "replicas": [
                    {"slot": 0, "health": "in_service"},
                    {"slot": 1, "health": "resyncing", "done": 1, "total": 4},
                    {"slot": 2, "health": "degraded", "missing_chunks": 7, "needs_rebuild": false}]},
                {"id": "v2", "name": null, "status": "available", "size": 1, "open": false},
            ],
            "summary": {"volumes": 2, "open": 1, "degraded": 1},
        })
    }

    #[test]
    fn the_table_shows_each_replica_and_the_exit_code_says_degraded() {
        let t = status_table(&sample());
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("VOLUME"));
        assert!(
            lines[1].contains("ok") && lines[1].contains("resync 25%"),
            "{t}"
        );
        assert!(lines[1].contains("out (7 chunks)"));
        assert!(
            lines[2].contains("(closed)") && lines[2].contains(" - "),
            "{t}"
        );
        assert!(lines[3].contains("1 with a replica out of service"));
        assert_eq!(status_exit_code(&sample()), 1);
        let mut healthy = sample();
        healthy["summary"]["degraded"] = json!(0);
        assert_eq!(status_exit_code(&healthy), 0);
    }

    #[test]
    fn a_scrub_reads_as_a_line_and_an_exit_code() {
        let done = json!({"state": "done", "blocks_checked": 30, "bad": 2, "repaired": 2, "unrepairable": 0});
        assert_eq!(
            scrub_line("v1", &done),
            "v1: 30 blocks checked, 2 bad, 2 repaired, 0 unrepairable"
        );
        assert_eq!(scrub_exit_code(&done), 0);
        let lost = json!({"state": "done", "unrepairable": 1});
        assert_eq!(scrub_exit_code(&lost), 1);
        assert_eq!(
            scrub_exit_code(&json!({"state": "failed", "error": "x"})),
            1
        );
        let status = json!({"volumes": [{"id": "v1", "last_scrub": done}]});
        assert_eq!(last_scrub(&status, "v1"), Some(done));
        assert_eq!(last_scrub(&status, "v2"), None);
    }

    #[test]
    fn credentials_come_from_the_os_variables() {
        let env = |k: &str| match k {
            "OS_AUTH_URL" => Some("http://h:8776/identity/v3/".to_owned()),
            "OS_USERNAME" => Some("admin".to_owned()),
            "OS_PASSWORD" => Some("pw".to_owned()),
            "OS_PROJECT_NAME" => Some("admin".to_owned()),
            _ => None,
        };
        let c = Credentials::from_env(env).unwrap();
        assert_eq!(c.auth_url, "http://h:8776/identity/v3");
        assert_eq!(c.user_domain, "Default");
        let missing = Credentials::from_env(|k| (k != "OS_PASSWORD").then(|| "x".to_owned()));
        assert!(matches!(
            missing,
            Err(ClientError::MissingVariable("OS_PASSWORD"))
        ));
    }

    #[test]
    fn the_endpoint_comes_from_the_token_catalog() {
        let token = json!({"token": {"catalog": [
            {"type": "identity", "endpoints": [{"interface": "public", "url": "http://h/identity/v3"}]},
            {"type": "block-storage", "endpoints": [
                {"interface": "admin", "url": "http://a/v3/p"},
                {"interface": "public", "url": "http://h:8776/v3/p/"}]},
        ]}});
        assert_eq!(
            block_storage_endpoint(&token).as_deref(),
            Some("http://h:8776/v3/p")
        );
        assert_eq!(block_storage_endpoint(&json!({})), None);
    }
}
