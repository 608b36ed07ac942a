//! A key management service double for tests: the Huawei Cloud KMS dialect Tripod's KMS
//! provider speaks (`create-key`, `list-keys`, `describe-key`, `encrypt-datakey`,
//! `decrypt-datakey`), on loopback, with real AES-GCM-SIV wrapping, the token checked and the
//! additional authenticated data bound — what a real KMS does, minus durability and policy.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::Arc;

use aes_gcm_siv::aead::{Aead, KeyInit, Payload};
use aes_gcm_siv::{Aes256GcmSiv, Nonce};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use parking_lot::Mutex;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

pub const TOKEN: &str = "kms-test-token";

/// A key in the double: alias, state, key bytes.
pub type KmsKey = (String, String, [u8; 32]);

#[derive(Default)]
pub struct Kms {
    /// By id.
    pub keys: Mutex<HashMap<String, KmsKey>>,
}

async fn action(
    State(kms): State<Arc<Kms>>,
    Path((_project, action)): Path<(String, String)>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let bad = |m: &str| {
        (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": {"error_msg": m}})),
        )
    };
    if headers.get("X-Auth-Token").and_then(|v| v.to_str().ok()) != Some(TOKEN) {
        return (StatusCode::UNAUTHORIZED, Json(json!({})));
    }
    let mut keys = kms.keys.lock();
    let key_id = body["key_id"].as_str().unwrap_or_default().to_owned();
    let ctx = body["additional_authenticated_data"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    match action.as_str() {
        "create-key" => {
            let id = uuid::Uuid::new_v4().to_string();
            let alias = body["key_alias"].as_str().unwrap_or_default().to_owned();
            keys.insert(
                id.clone(),
                (alias, "2".into(), {
                    let mut k = [0u8; 32];
                    getrandom::fill(&mut k).unwrap();
                    k
                }),
            );
            (StatusCode::OK, Json(json!({"key_info": {"key_id": id}})))
        }
        "list-keys" => {
            let details: Vec<Value> = keys
                .iter()
                .map(|(id, (alias, state, _))| {
                    json!({"key_id": id, "key_alias": alias, "key_state": state})
                })
                .collect();
            (
                StatusCode::OK,
                Json(json!({"key_details": details, "truncated": "false"})),
            )
        }
        "describe-key" => match keys.get(&key_id) {
            Some((alias, state, _)) => (
                StatusCode::OK,
                Json(
                    json!({"key_info": {"key_id": key_id, "key_alias": alias, "key_state": state}}),
                ),
            ),
            None => (StatusCode::NOT_FOUND, Json(json!({}))),
        },
        "encrypt-datakey" => {
            let Some((_, _, k)) = keys.get(&key_id) else {
                return bad("no such key");
            };
            let plain = hex::decode(body["plain_text"].as_str().unwrap_or_default()).unwrap();
            let (key, dgst) = plain.split_at(32);
            if Sha256::digest(key).as_slice() != dgst {
                return bad("digest");
            }
            let sealed = Aes256GcmSiv::new_from_slice(k)
                .unwrap()
                .encrypt(
                    &Nonce::from([0u8; 12]),
                    Payload {
                        msg: key,
                        aad: ctx.as_bytes(),
                    },
                )
                .unwrap();
            (
                StatusCode::OK,
                Json(json!({"key_id": key_id, "cipher_text": hex::encode(sealed)})),
            )
        }
        "decrypt-datakey" => {
            let Some((_, _, k)) = keys.get(&key_id) else {
                return bad("no such key");
            };
            let sealed =
                hex::decode(body["cipher_text"].as_str().unwrap_or_default()).unwrap_or_default();
            match Aes256GcmSiv::new_from_slice(k).unwrap().decrypt(
                &Nonce::from([0u8; 12]),
                Payload {
                    msg: &sealed,
                    aad: ctx.as_bytes(),
                },
            ) {
                Ok(key) => (
                    StatusCode::OK,
                    Json(
                        json!({"data_key": hex::encode(&key), "datakey_dgst": hex::encode(Sha256::digest(&key))}),
                    ),
                ),
                Err(_) => bad("decrypt failed"),
            }
        }
        _ => bad("unknown action"),
    }
}

/// Starts the double; returns its URL, its state and the runtime serving it.
pub fn start() -> (String, Arc<Kms>, tokio::runtime::Runtime) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let kms = Arc::new(Kms::default());
    let app = axum::Router::new()
        .route("/v1.0/{project}/kms/{action}", axum::routing::post(action))
        .with_state(kms.clone());
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    rt.spawn(async move { axum::serve(listener, app).await });
    (url, kms, rt)
}
