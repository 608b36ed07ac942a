//! The admin API, handler by handler, through `Router::oneshot` on a real catalog and real
//! replica sets: each endpoint's success and its documented errors (`docs/api.md`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod api_support;

use api_support::{password_auth, Api, Login};
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::{json, Value};
use tripod::config::Settings;
use tripod::nbd::Exports;

fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
    k.sort();
    k
}

#[tokio::test(flavor = "multi_thread")]
async fn version_documents_need_no_token() {
    let api = Api::new();
    let root = api.call(Method::GET, "/", None, None).await;
    assert_eq!(root.status, StatusCode::MULTIPLE_CHOICES);
    assert_eq!(root.body["versions"][0]["id"], "v2.0");
    assert!(root.headers.contains_key("x-openstack-request-id"));
    for path in ["/v2", "/v2/", "/v3", "/v3/"] {
        let a = api.call(Method::GET, path, None, None).await;
        assert_eq!(a.status, StatusCode::OK, "{path}");
        assert_eq!(a.body["versions"].as_array().unwrap().len(), 1);
        assert_eq!(
            a.body["versions"][0]["links"][1]["href"],
            format!("http://127.0.0.1:8776{}/", path.trim_end_matches('/'))
        );
    }
    let id = api.call(Method::GET, "/identity/v3", None, None).await;
    assert_eq!(id.status, StatusCode::OK);
    assert_eq!(id.body["version"]["status"], "stable");
}

#[tokio::test(flavor = "multi_thread")]
async fn keystone_tokens_scope_expire_and_revoke() {
    let api = Api::new();
    let bad = api
        .call(
            Method::POST,
            "/identity/v3/auth/tokens",
            None,
            Some(password_auth("admin", "nope", "admin")),
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED);
    assert_eq!(bad.body["error"]["code"], 401);
    let admin = api.admin().await;
    assert_eq!(admin.token.len(), 64);
    // The token body: user, project, roles, a catalog pointing at this server.
    let body = api
        .call(
            Method::POST,
            "/identity/v3/auth/tokens",
            None,
            Some(password_auth("admin", api_support::PASSWORD, "admin")),
        )
        .await
        .body;
    let t = &body["token"];
    assert_eq!(t["roles"][0]["name"], "admin");
    let types: Vec<&str> = t["catalog"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["type"].as_str().unwrap())
        .collect();
    for want in ["volumev2", "volumev3", "block-storage"] {
        assert!(types.contains(&want), "{types:?}");
    }
    assert!(t["expires_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(
        t["catalog"][0]["endpoints"][0]["url"],
        format!("http://127.0.0.1:8776/v2/{}", admin.project)
    );
    // Validate, revoke, then the token is useless.
    let mut req = Request::builder()
        .method(Method::GET)
        .uri("/identity/v3/auth/tokens")
        .header("x-auth-token", &admin.token)
        .header("x-subject-token", &admin.token)
        .body(Body::empty())
        .unwrap();
    assert_eq!(api.raw(req).await.status, StatusCode::OK);
    req = Request::builder()
        .method(Method::DELETE)
        .uri("/identity/v3/auth/tokens")
        .header("x-auth-token", &admin.token)
        .header("x-subject-token", &admin.token)
        .body(Body::empty())
        .unwrap();
    assert_eq!(api.raw(req).await.status, StatusCode::NO_CONTENT);
    let after = api
        .get(&format!("/v2/{}/volumes", admin.project), &admin.token)
        .await;
    assert_eq!(after.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        after.fault(),
        ("unauthorized".into(), 401, "EVS.5401".into())
    );
    // Missing and unknown tokens.
    let none = api
        .call(
            Method::GET,
            &format!("/v2/{}/volumes", admin.project),
            None,
            None,
        )
        .await;
    assert_eq!(none.status, StatusCode::UNAUTHORIZED);
    let junk = api
        .get(&format!("/v2/{}/volumes", admin.project), "deadbeef")
        .await;
    assert_eq!(junk.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread")]
async fn expired_tokens_are_refused() {
    let api = Api::with(Settings {
        token_ttl_secs: Some(1),
        ..Default::default()
    });
    let admin = api.admin().await;
    let path = format!("/v2/{}/volumes", admin.project);
    assert_eq!(api.get(&path, &admin.token).await.status, StatusCode::OK);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(
        api.get(&path, &admin.token).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn identity_admin_calls_are_admin_only() {
    let api = Api::new();
    let admin = api.admin().await;
    let alice = api.tenant(&admin, "alice", "member").await;
    let denied = api
        .post(
            "/identity/v3/projects",
            &alice.token,
            json!({"project": {"name": "x"}}),
        )
        .await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    assert_eq!(denied.body["error"]["code"], 403);
    let dup = api
        .post(
            "/identity/v3/projects",
            &admin.token,
            json!({"project": {"name": "alice"}}),
        )
        .await;
    assert_eq!(dup.status, StatusCode::CONFLICT);
    let roles = api.get("/identity/v3/roles", &alice.token).await;
    let names: Vec<&str> = roles.body["roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["admin", "member"]);
    let users = api.get("/identity/v3/users", &admin.token).await;
    assert_eq!(users.body["users"].as_array().unwrap().len(), 2);
    assert!(
        !String::from_utf8_lossy(&users.raw).contains("argon2"),
        "hashes never leave"
    );
    let projects = api.get("/identity/v3/projects", &alice.token).await;
    assert_eq!(
        projects.body["projects"].as_array().unwrap().len(),
        1,
        "members see their own"
    );
    let shown = api
        .get(
            &format!("/identity/v3/projects/{}", alice.project),
            &alice.token,
        )
        .await;
    assert_eq!(shown.body["project"]["name"], "alice");
    let other = api
        .get(
            &format!("/identity/v3/projects/{}", admin.project),
            &alice.token,
        )
        .await;
    assert_eq!(
        other.status,
        StatusCode::NOT_FOUND,
        "members see only their project"
    );
    let me = api
        .get(&format!("/identity/v3/users/{}", alice.user), &alice.token)
        .await;
    assert_eq!(me.body["user"]["name"], "alice");
    assert!(me.body["user"].get("password").is_none());
    let grants = api
        .get(
            &format!(
                "/identity/v3/projects/{}/users/{}/roles",
                alice.project, alice.user
            ),
            &alice.token,
        )
        .await;
    assert_eq!(grants.body["roles"][0]["name"], "member");
    let check = |role: &str| {
        format!(
            "/identity/v3/projects/{}/users/{}/roles/{role}",
            alice.project, alice.user
        )
    };
    assert_eq!(
        api.call(Method::HEAD, &check("member"), Some(&admin.token), None)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        api.call(Method::HEAD, &check("admin"), Some(&admin.token), None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let no_name = api
        .post(
            "/identity/v3/users",
            &admin.token,
            json!({"user": {"password": "x"}}),
        )
        .await;
    assert_eq!(no_name.status, StatusCode::BAD_REQUEST);
    assert_eq!(no_name.body["error"]["code"], 400, "Keystone's error shape");
    let bad_role = api
        .call(
            Method::PUT,
            &format!(
                "/identity/v3/projects/{}/users/{}/roles/owner",
                alice.project, alice.user
            ),
            Some(&admin.token),
            None,
        )
        .await;
    assert_eq!(bad_role.status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread")]
async fn tenants_see_only_their_own_volumes() {
    let api = Api::new();
    let admin = api.admin().await;
    let alice = api.tenant(&admin, "alice", "member").await;
    let bob = api.tenant(&admin, "bob", "member").await;
    let vol = api.volume(&alice, json!({"size": 1, "name": "a"})).await;
    let snap = api.snapshot(&alice, &vol).await;
    // Bob's token on Alice's project path.
    let cross = api
        .get(&format!("/v2/{}/volumes", alice.project), &bob.token)
        .await;
    assert_eq!(cross.status, StatusCode::BAD_REQUEST);
    assert!(cross.body["badRequest"]["message"]
        .as_str()
        .unwrap()
        .contains("Malformed request url"));
    // Alice's ids under Bob's project.
    let b = |rest: &str| format!("/v2/{}/{rest}", bob.project);
    for path in [
        b(&format!("volumes/{vol}")),
        b(&format!("volumes/{vol}/metadata")),
        b(&format!("snapshots/{snap}")),
    ] {
        let a = api.get(&path, &bob.token).await;
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(a.fault().2, "EVS.5404");
    }
    assert_eq!(
        api.delete(&b(&format!("volumes/{vol}")), &bob.token)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let action = api
        .post(
            &b(&format!("volumes/{vol}/action")),
            &bob.token,
            json!({"os-extend": {"new_size": 2}}),
        )
        .await;
    assert_eq!(action.status, StatusCode::NOT_FOUND);
    let snap_other = api
        .post(
            &b("snapshots"),
            &bob.token,
            json!({"snapshot": {"volume_id": vol}}),
        )
        .await;
    assert_eq!(snap_other.status, StatusCode::NOT_FOUND);
    let clone = api
        .post(
            &b("volumes"),
            &bob.token,
            json!({"volume": {"source_volid": vol}}),
        )
        .await;
    assert_eq!(clone.status, StatusCode::NOT_FOUND);
    let listed = api.get(&b("volumes/detail"), &bob.token).await;
    assert_eq!(listed.body["volumes"], json!([]));
    let snaps = api.get(&b("snapshots"), &bob.token).await;
    assert_eq!(snaps.body["snapshots"], json!([]));
    // all_tenants is an admin power only.
    let ignored = api.get(&b("volumes?all_tenants=1"), &bob.token).await;
    assert_eq!(ignored.body["volumes"], json!([]));
    let all = api
        .get(
            &format!("/v2/{}/volumes/detail?all_tenants=1", admin.project),
            &admin.token,
        )
        .await;
    assert_eq!(all.body["volumes"].as_array().unwrap().len(), 1);
    assert_eq!(
        all.body["volumes"][0]["os-vol-tenant-attr:tenant_id"],
        alice.project.as_str()
    );
    // Members do not get admin attributes.
    let mine = api
        .get(
            &format!("/v2/{}/volumes/{vol}", alice.project),
            &alice.token,
        )
        .await;
    assert!(mine.body["volume"].get("os-vol-host-attr:host").is_none());
    // Quotas of another project: 403 for members.
    let q = api
        .get(
            &b(&format!("os-quota-sets/{}?usage=True", alice.project)),
            &bob.token,
        )
        .await;
    assert_eq!(q.status, StatusCode::FORBIDDEN);
}

#[tokio::test(flavor = "multi_thread")]
async fn volume_lifecycle_and_views() {
    let api = Api::new();
    let admin = api.admin().await;
    let p = |rest: &str| format!("/v2/{}/{rest}", admin.project);
    let created = api
        .post(
            &p("volumes"),
            &admin.token,
            json!({"volume": {"size": "2", "name": "  data  ", "description": "d",
                "metadata": {"k": "v"}, "availability_zone": null, "volume_type": "SAS",
                "unknown_inner_key": 1}, "OS-SCH-HNT:scheduler_hints": null}),
        )
        .await;
    assert_eq!(created.status, StatusCode::ACCEPTED, "{:?}", created.body);
    let v = &created.body["volume"];
    assert_eq!(v["name"], "data");
    assert_eq!(v["size"], 2);
    assert_eq!(v["bootable"], "false");
    assert_eq!(v["volume_type"], "SAS");
    assert!(
        v.get("os-vol-host-attr:host").is_none(),
        "no admin attrs on create"
    );
    assert!(v["updated_at"].is_null());
    let id = v["id"].as_str().unwrap().to_owned();
    let shown = api
        .wait_status(
            &p(&format!("volumes/{id}")),
            &admin.token,
            "volume",
            "available",
        )
        .await;
    assert_eq!(shown["os-vol-host-attr:host"], "tripod@replicas#SAS");
    assert_eq!(
        shown["links"][0]["href"],
        format!("http://127.0.0.1:8776{}", p(&format!("volumes/{id}")))
    );
    assert_eq!(
        api.set(&id).size(),
        2 << 30,
        "the replica set has the volume's size"
    );

    let summary = api.get(&p("volumes"), &admin.token).await;
    assert_eq!(keys(&summary.body["volumes"][0]), ["id", "links", "name"]);

    let upd = api
        .put(
            &p(&format!("volumes/{id}")),
            &admin.token,
            json!({"volume": {"display_name": "x", "metadata": {"a": "b"}}}),
        )
        .await;
    assert_eq!(upd.status, StatusCode::OK);
    assert_eq!(upd.body["volume"]["name"], "x");
    assert_eq!(
        upd.body["volume"]["metadata"],
        json!({"a": "b"}),
        "metadata replaced whole"
    );
    let bad_upd = api
        .put(
            &p(&format!("volumes/{id}")),
            &admin.token,
            json!({"volume": {"size": 9}}),
        )
        .await;
    assert_eq!(bad_upd.status, StatusCode::BAD_REQUEST);

    assert_eq!(
        api.delete(&p(&format!("volumes/{id}")), &admin.token)
            .await
            .status,
        StatusCode::ACCEPTED
    );
    api.wait_gone(&p(&format!("volumes/{id}")), &admin.token)
        .await;
    assert!(
        api.state.backend.registry().lookup(&id).is_none(),
        "no longer exported"
    );
    let dir = api.dir.path().join("replicas/0").join(&id);
    assert!(!dir.exists(), "replica directories removed");
    let again = api.delete(&p(&format!("volumes/{id}")), &admin.token).await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_volume_requests_get_clear_errors() {
    let api = Api::new();
    let admin = api.admin().await;
    let path = format!("/v2/{}/volumes", admin.project);
    let cases: Vec<(Value, u16, &str)> = vec![
        (json!({"volume": {"size": 0}}), 400, "EVS.1010"),
        (json!({"volume": {"size": -1}}), 400, "EVS.1010"),
        (json!({"volume": {"size": "abc"}}), 400, "EVS.1010"),
        (json!({"volume": {"size": 1.5}}), 400, "EVS.1010"),
        (json!({"volume": {"size": 32769}}), 400, "EVS.1010"),
        (json!({"volume": {"name": "no size"}}), 400, "EVS.1010"),
        (
            json!({"volume": {"size": 1, "availability_zone": "mars"}}),
            400,
            "EVS.1036",
        ),
        (
            json!({"volume": {"size": 1, "volume_type": "TAPE"}}),
            404,
            "EVS.5404",
        ),
        (
            json!({"volume": {"size": 1, "imageRef": "x"}}),
            400,
            "EVS.2046",
        ),
        (
            json!({"volume": {"size": 1, "snapshot_id": "a", "source_volid": "b"}}),
            400,
            "EVS.1016",
        ),
        (json!({"volume": {"size": 1}, "extra": 1}), 400, "EVS.5400"),
        (
            json!({"volume": {"size": 1, "name": "x".repeat(256)}}),
            400,
            "EVS.1003",
        ),
        (
            json!({"volume": {"size": 1, "metadata": {"k": 1}}}),
            400,
            "EVS.5400",
        ),
        (
            json!({"volume": {"size": 1, "multiattach": "perhaps"}}),
            400,
            "EVS.5400",
        ),
        (json!({"volume": {"size": 1, "count": 2}}), 400, "EVS.5400"),
        (
            json!({"volume": {"size": 1, "consistencygroup_id": "c"}}),
            404,
            "EVS.5404",
        ),
        (
            json!({"volume": {"snapshot_id": "7c3d2bd5-d0a4-4a05-9ad3-a1a6e53f4f52"}}),
            404,
            "EVS.5404",
        ),
        (
            json!({"volume": {"source_volid": "7c3d2bd5-d0a4-4a05-9ad3-a1a6e53f4f52"}}),
            404,
            "EVS.5404",
        ),
        (json!({"volume": "x"}), 400, "EVS.5400"),
        (json!([1, 2]), 400, "EVS.5400"),
    ];
    for (body, status, code) in cases {
        let a = api.post(&path, &admin.token, body.clone()).await;
        assert_eq!(a.status.as_u16(), status, "{body}: {:?}", a.body);
        let (_, int_code, evs) = a.fault();
        assert_eq!(int_code, i64::from(status));
        assert_eq!(evs, code, "{body}");
    }
    // Malformed JSON, wrong media type, oversized body.
    let send = |body: Vec<u8>, ct: &str| {
        Request::builder()
            .method(Method::POST)
            .uri(&path)
            .header("x-auth-token", &admin.token)
            .header("content-type", ct)
            .body(Body::from(body))
            .unwrap()
    };
    let a = api
        .raw(send(b"{\"volume\": {".to_vec(), "application/json"))
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(a.body["badRequest"]["message"], "Malformed request body.");
    let a = api.raw(send(b"{}".to_vec(), "text/plain")).await;
    assert_eq!(a.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(a.fault().0, "badMediaType");
    let mut big = b"{\"volume\": {\"size\": 1, \"description\": \"".to_vec();
    big.extend(std::iter::repeat_n(b'x', 2 << 20));
    big.extend(b"\"}}");
    let a = api.raw(send(big, "application/json; charset=UTF-8")).await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(a.fault(), ("overLimit".into(), 413, "EVS.5413".into()));
    // Unknown routes and methods get fault bodies too.
    let a = api
        .get(&format!("/v2/{}/nothing", admin.project), &admin.token)
        .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert_eq!(a.fault().0, "itemNotFound");
    let a = api
        .call(Method::PATCH, &path, Some(&admin.token), None)
        .await;
    assert_eq!(a.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(a.fault().0, "badMethod");
    let a = api.get("/v2/bad%20project!/volumes", &admin.token).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    // Nothing was created by any of it.
    let list = api.get(&path, &admin.token).await;
    assert_eq!(list.body["volumes"], json!([]));
}

#[tokio::test(flavor = "multi_thread")]
async fn lists_page_sort_and_filter() {
    let api = Api::new();
    let admin = api.admin().await;
    let mut ids = Vec::new();
    for (i, name) in ["c", "a", "e", "b", "d"].iter().enumerate() {
        let meta = if i % 2 == 0 {
            json!({"even": "yes"})
        } else {
            json!({})
        };
        ids.push(
            api.volume(
                &admin,
                json!({"size": i + 1, "name": name, "metadata": meta}),
            )
            .await,
        );
    }
    let p = |q: &str| format!("/v2/{}/volumes{q}", admin.project);
    let names = |a: &api_support::Answer| -> Vec<String> {
        a.body["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["name"].as_str().unwrap().to_owned())
            .collect()
    };
    // Default: created_at desc.
    let a = api.get(&p(""), &admin.token).await;
    assert_eq!(names(&a), ["d", "b", "e", "a", "c"]);
    assert!(
        a.body.get("volumes_links").is_none(),
        "no link unless the page is full"
    );
    let a = api.get(&p("?sort=name:asc"), &admin.token).await;
    assert_eq!(names(&a), ["a", "b", "c", "d", "e"]);
    let a = api
        .get(&p("?sort_key=size&sort_dir=asc"), &admin.token)
        .await;
    assert_eq!(names(&a), ["c", "a", "e", "b", "d"]);
    // Marker paging follows the next link.
    let first = api.get(&p("?sort=name:asc&limit=2"), &admin.token).await;
    assert_eq!(names(&first), ["a", "b"]);
    let next = first.body["volumes_links"][0]["href"].as_str().unwrap();
    assert_eq!(first.body["volumes_links"][0]["rel"], "next");
    let next_path = next.strip_prefix("http://127.0.0.1:8776").unwrap();
    let second = api.get(next_path, &admin.token).await;
    assert_eq!(names(&second), ["c", "d"]);
    let a = api
        .get(&p("/detail?sort=name:asc&offset=3"), &admin.token)
        .await;
    assert_eq!(names(&a), ["d", "e"]);
    let a = api.get(&p("?limit=0"), &admin.token).await;
    assert_eq!(a.body["volumes"], json!([]));
    // Filters.
    let a = api.get(&p("?name=e"), &admin.token).await;
    assert_eq!(names(&a), ["e"]);
    let a = api
        .get(
            &p("/detail?metadata=%7B%22even%22%3A%22yes%22%7D&sort=name:asc"),
            &admin.token,
        )
        .await;
    assert_eq!(names(&a), ["c", "d", "e"]);
    let a = api
        .get(&p("/detail?status=available&size=3"), &admin.token)
        .await;
    assert_eq!(names(&a), ["e"]);
    let a = api.get(&p("?bogus_filter=1"), &admin.token).await;
    assert_eq!(
        a.body["volumes"].as_array().unwrap().len(),
        5,
        "unknown filters are dropped"
    );
    // Bad parameters.
    for (q, code) in [
        ("?limit=abc", "EVS.1023"),
        ("?limit=-1", "EVS.1023"),
        ("?limit=1001", "EVS.2142"),
        ("?marker=nope", "EVS.1024"),
        ("?sort_key=colour", "EVS.1039"),
        ("?sort_dir=sideways", "EVS.1040"),
        ("?sort=name&sort_key=id", "EVS.5400"),
        ("?offset=-1", "EVS.5400"),
        ("?offset=x", "EVS.5400"),
        ("?metadata=notjson", "EVS.1058"),
    ] {
        let a = api.get(&p(q), &admin.token).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{q}");
        assert_eq!(a.fault().2, code, "{q}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn volume_and_snapshot_metadata_operations() {
    let api = Api::new();
    let admin = api.admin().await;
    let vol = api
        .volume(&admin, json!({"size": 1, "metadata": {"a": "1"}}))
        .await;
    let snap = api.snapshot(&admin, &vol).await;
    for base in [
        format!("/v2/{}/volumes/{vol}/metadata", admin.project),
        format!("/v2/{}/snapshots/{snap}/metadata", admin.project),
    ] {
        let t = &admin.token;
        let merged = api.post(&base, t, json!({"metadata": {"b": "2"}})).await;
        assert_eq!(merged.status, StatusCode::OK);
        assert_eq!(merged.body["metadata"]["b"], "2");
        let all = api.get(&base, t).await;
        assert_eq!(all.body["metadata"]["b"], "2");
        let one = api.get(&format!("{base}/b"), t).await;
        assert_eq!(one.body, json!({"meta": {"b": "2"}}));
        let put = api
            .put(&format!("{base}/b"), t, json!({"meta": {"b": "3"}}))
            .await;
        assert_eq!(put.body, json!({"meta": {"b": "3"}}));
        let mismatch = api
            .put(&format!("{base}/b"), t, json!({"meta": {"c": "3"}}))
            .await;
        assert_eq!(mismatch.status, StatusCode::BAD_REQUEST);
        let many = api
            .put(
                &format!("{base}/b"),
                t,
                json!({"meta": {"b": "3", "c": "4"}}),
            )
            .await;
        assert_eq!(many.status, StatusCode::BAD_REQUEST);
        let bad_key = api
            .post(&base, t, json!({"metadata": {"bad*key": "v"}}))
            .await;
        assert_eq!(bad_key.status, StatusCode::BAD_REQUEST);
        let missing = api.post(&base, t, json!({"meta": {}})).await;
        assert_eq!(missing.status, StatusCode::BAD_REQUEST);
        let replaced = api.put(&base, t, json!({"metadata": {"z": "9"}})).await;
        assert_eq!(replaced.body, json!({"metadata": {"z": "9"}}));
        let del = api.delete(&format!("{base}/z"), t).await;
        assert_eq!(del.status, StatusCode::OK);
        assert!(del.raw.is_empty(), "zero-length body");
        let gone = api.get(&format!("{base}/z"), t).await;
        assert_eq!(gone.status, StatusCode::NOT_FOUND);
        assert!(gone.fault().0 == "itemNotFound");
        assert_eq!(
            api.delete(&format!("{base}/z"), t).await.status,
            StatusCode::NOT_FOUND
        );
    }
}

async fn action(api: &Api, who: &Login, vol: &str, body: Value) -> api_support::Answer {
    api.post(
        &format!("/v2/{}/volumes/{vol}/action", who.project),
        &who.token,
        body,
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn volume_actions() {
    let api = Api::new();
    let admin = api.admin().await;
    let vol = api.volume(&admin, json!({"size": 1})).await;
    let vpath = format!("/v2/{}/volumes/{vol}", admin.project);
    let set = api.set(&vol);
    set.write(0, &[0x42; 4096]).unwrap();

    // os-extend: online, O(metadata), data kept.
    let a = action(&api, &admin, &vol, json!({"os-extend": {"new_size": 3}})).await;
    assert_eq!(a.status, StatusCode::ACCEPTED);
    assert!(a.raw.is_empty());
    let v = api
        .wait_status(&vpath, &admin.token, "volume", "available")
        .await;
    assert_eq!(v["size"], 3);
    assert_eq!(set.size(), 3 << 30);
    assert_eq!(&set.read(0, 4096).unwrap()[..], &[0x42; 4096][..]);
    for (body, code) in [
        (json!({"os-extend": {"new_size": 3}}), "EVS.1015"),
        (json!({"os-extend": {"new_size": 2}}), "EVS.1015"),
        (json!({"os-extend": {"new_size": "x"}}), "EVS.1010"),
        (json!({"os-extend": {"new_size": 99999}}), "EVS.1010"),
        (json!({"os-extend": {"new_size": 4, "x": 1}}), "EVS.5400"),
    ] {
        let a = action(&api, &admin, &vol, body.clone()).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(a.fault().2, code, "{body}");
    }
    // os-set_bootable.
    let a = action(
        &api,
        &admin,
        &vol,
        json!({"os-set_bootable": {"bootable": "yes"}}),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(
        api.get(&vpath, &admin.token).await.body["volume"]["bootable"],
        "true"
    );
    let a = action(
        &api,
        &admin,
        &vol,
        json!({"os-set_bootable": {"bootable": "maybe"}}),
    )
    .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    // os-update_readonly_flag: shown in metadata and honoured by the NBD export, also by
    // connections made before the change.
    let connected = api.state.backend.registry().lookup(&vol).unwrap().device;
    connected
        .write(0, bytes::Bytes::from(vec![0x42; 4096]))
        .unwrap();
    let a = action(
        &api,
        &admin,
        &vol,
        json!({"os-update_readonly_flag": {"readonly": true}}),
    )
    .await;
    assert_eq!(a.status, StatusCode::ACCEPTED);
    assert_eq!(
        api.get(&vpath, &admin.token).await.body["volume"]["metadata"]["readonly"],
        "True"
    );
    assert!(api.state.backend.registry().lookup(&vol).unwrap().read_only);
    assert!(matches!(
        connected.write(0, bytes::Bytes::from(vec![0x43; 4096])),
        Err(tripod::nbd::DeviceError::ReadOnly)
    ));
    assert!(connected.trim(0, 4096).is_err());
    assert_eq!(&connected.read(0, 4096).unwrap()[..], &[0x42; 4096][..]);
    // Attach rw to a read-only volume is refused; ro works.
    let attach = |mode: &str| json!({"os-attach": {"instance_uuid": "9a6d7c4e-1f2b-4c3d-8e9f-0a1b2c3d4e5f", "mountpoint": "/dev/vdb", "mode": mode}});
    assert_eq!(
        action(&api, &admin, &vol, attach("rw")).await.status,
        StatusCode::BAD_REQUEST
    );
    let a = action(
        &api,
        &admin,
        &vol,
        json!({"os-update_readonly_flag": {"readonly": false}}),
    )
    .await;
    assert_eq!(a.status, StatusCode::ACCEPTED);
    assert!(!api.state.backend.registry().lookup(&vol).unwrap().read_only);
    // The admin key stays once set, now saying "False" (as Cinder).
    assert_eq!(
        api.get(&vpath, &admin.token).await.body["volume"]["metadata"]["readonly"],
        "False"
    );
    connected
        .write(0, bytes::Bytes::from(vec![0x42; 4096]))
        .unwrap();
    // reserve → attaching; unreserve → available; attach → in-use; detach → available.
    assert_eq!(
        action(&api, &admin, &vol, json!({"os-reserve": null}))
            .await
            .status,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        api.get(&vpath, &admin.token).await.body["volume"]["status"],
        "attaching"
    );
    assert_eq!(
        action(&api, &admin, &vol, json!({"os-reserve": {}}))
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        action(&api, &admin, &vol, json!({"os-unreserve": {}}))
            .await
            .status,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        api.get(&vpath, &admin.token).await.body["volume"]["status"],
        "available"
    );
    assert_eq!(
        action(&api, &admin, &vol, attach("rw")).await.status,
        StatusCode::ACCEPTED
    );
    let v = api.get(&vpath, &admin.token).await.body["volume"].clone();
    assert_eq!(v["status"], "in-use");
    assert_eq!(
        keys(&v["attachments"][0]),
        [
            "attached_at",
            "attachment_id",
            "device",
            "host_name",
            "id",
            "server_id",
            "volume_id"
        ]
    );
    assert_eq!(v["attachments"][0]["device"], "/dev/vdb");
    // In use: no delete, no plain snapshot, extend still allowed (EVS).
    assert_eq!(
        api.delete(&vpath, &admin.token).await.status,
        StatusCode::BAD_REQUEST
    );
    let snap = api
        .post(
            &format!("/v2/{}/snapshots", admin.project),
            &admin.token,
            json!({"snapshot": {"volume_id": vol}}),
        )
        .await;
    assert_eq!(snap.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        action(&api, &admin, &vol, json!({"os-extend": {"new_size": 4}}))
            .await
            .status,
        StatusCode::ACCEPTED
    );
    let v = api
        .wait_status(&vpath, &admin.token, "volume", "in-use")
        .await;
    assert_eq!(v["size"], 4);
    let bogus = action(
        &api,
        &admin,
        &vol,
        json!({"os-detach": {"attachment_id": "nope"}}),
    )
    .await;
    assert_eq!(bogus.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        action(&api, &admin, &vol, json!({"os-detach": {}}))
            .await
            .status,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        api.get(&vpath, &admin.token).await.body["volume"]["status"],
        "available"
    );
    // Attach needs a mount point and an instance or host.
    let a = action(
        &api,
        &admin,
        &vol,
        json!({"os-attach": {"mountpoint": "/dev/vdc"}}),
    )
    .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    // Unknown and malformed actions.
    let a = action(&api, &admin, &vol, json!({"os-teleport": {}})).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(a.body["badRequest"]["message"]
        .as_str()
        .unwrap()
        .contains("There is no such action"));
    let a = action(
        &api,
        &admin,
        &vol,
        json!({"os-extend": {"new_size": 5}, "os-reserve": {}}),
    )
    .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    let a = action(
        &api,
        &admin,
        "7c3d2bd5-d0a4-4a05-9ad3-a1a6e53f4f52",
        json!({"os-reserve": {}}),
    )
    .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread")]
async fn upload_image_writes_the_volume_content() {
    let api = Api::new();
    let admin = api.admin().await;
    let vol = api.volume(&admin, json!({"size": 1})).await;
    let set = api.set(&vol);
    set.write(4096, &[0xab; 8192]).unwrap();
    set.write((1 << 30) - 4096, &[0xcd; 4096]).unwrap();
    let vpath = format!("/v2/{}/volumes/{vol}", admin.project);
    let mut formats = vec!["raw"];
    if tripod::images::qemu_img_available() {
        formats.push("qcow2");
    }
    for fmt in formats {
        let a = action(&api, &admin, &vol, json!({"os-volume_upload_image": {"image_name": "img", "disk_format": fmt, "force": false}})).await;
        assert_eq!(a.status, StatusCode::ACCEPTED, "{:?}", a.body);
        let r = &a.body["os-volume_upload_image"];
        assert_eq!(r["status"], "uploading");
        assert_eq!(r["disk_format"], fmt);
        assert_eq!(r["container_format"], "bare");
        assert_eq!(r["volume_type"]["name"], "__DEFAULT__");
        let image = r["image_id"].as_str().unwrap().to_owned();
        api.wait_status(&vpath, &admin.token, "volume", "available")
            .await;
        let file = api.dir.path().join("images").join(format!("{image}.{fmt}"));
        let raw = if fmt == "raw" {
            std::fs::read(&file).unwrap()
        } else {
            let out = api.dir.path().join("check.raw");
            let st = std::process::Command::new("qemu-img")
                .args(["convert", "-f", "qcow2", "-O", "raw"])
                .arg(&file)
                .arg(&out)
                .status()
                .unwrap();
            assert!(st.success());
            std::fs::read(&out).unwrap()
        };
        assert_eq!(raw.len(), 1 << 30);
        assert!(raw[..4096].iter().all(|b| *b == 0));
        assert!(raw[4096..12288].iter().all(|b| *b == 0xab));
        assert!(raw[(1 << 30) - 4096..].iter().all(|b| *b == 0xcd));
    }
    for body in [
        json!({"os-volume_upload_image": {}}),
        json!({"os-volume_upload_image": {"image_name": "i", "disk_format": "floppy"}}),
        json!({"os-volume_upload_image": {"image_name": "i", "disk_format": "zvhd2"}}),
        json!({"os-volume_upload_image": {"image_name": "i", "__os_type": "beos"}}),
    ] {
        assert_eq!(
            action(&api, &admin, &vol, body.clone()).await.status,
            StatusCode::BAD_REQUEST,
            "{body}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn snapshots_rollback_and_copies() {
    let api = Api::new();
    let admin = api.admin().await;
    let p = |rest: &str| format!("/v2/{}/{rest}", admin.project);
    let vol = api
        .volume(&admin, json!({"size": 1, "volume_type": "ESSD"}))
        .await;
    let set = api.set(&vol);
    set.write(0, &[1; 4096]).unwrap();
    let created = api
        .post(
            &p("snapshots"),
            &admin.token,
            json!({"snapshot": {"volume_id": vol, "name": "one", "metadata": {"m": "n"}}}),
        )
        .await;
    assert_eq!(created.status, StatusCode::ACCEPTED);
    let base_keys = [
        "created_at",
        "description",
        "id",
        "metadata",
        "name",
        "size",
        "status",
        "updated_at",
        "volume_id",
    ];
    assert_eq!(keys(&created.body["snapshot"]), base_keys);
    let snap = created.body["snapshot"]["id"].as_str().unwrap().to_owned();
    let shown = api
        .wait_status(
            &p(&format!("snapshots/{snap}")),
            &admin.token,
            "snapshot",
            "available",
        )
        .await;
    assert_eq!(shown["os-extended-snapshot-attributes:progress"], "100%");
    assert_eq!(
        shown["os-extended-snapshot-attributes:project_id"],
        admin.project.as_str()
    );
    set.write(0, &[2; 4096]).unwrap();

    let list = api.get(&p("snapshots"), &admin.token).await;
    assert_eq!(keys(&list.body["snapshots"][0]), base_keys);
    let detail = api
        .get(
            &p(&format!("snapshots/detail?volume_id={vol}")),
            &admin.token,
        )
        .await;
    assert_eq!(detail.body["snapshots"].as_array().unwrap().len(), 1);
    let upd = api
        .put(
            &p(&format!("snapshots/{snap}")),
            &admin.token,
            json!({"snapshot": {"description": "d"}}),
        )
        .await;
    assert_eq!(upd.body["snapshot"]["description"], "d");
    assert_eq!(
        api.put(
            &p(&format!("snapshots/{snap}")),
            &admin.token,
            json!({"snapshot": {}})
        )
        .await
        .status,
        StatusCode::BAD_REQUEST
    );
    let bad = api
        .post(
            &p("snapshots"),
            &admin.token,
            json!({"snapshot": {"volume_id": vol, "display_description": "x"}}),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);

    // A volume from the snapshot holds the snapshot's data, not the head's.
    let from_snap = api.volume(&admin, json!({"snapshot_id": snap})).await;
    let v = api
        .get(&p(&format!("volumes/{from_snap}")), &admin.token)
        .await
        .body["volume"]
        .clone();
    assert_eq!(v["snapshot_id"], snap.as_str());
    assert_eq!(v["size"], 1);
    assert_eq!(v["volume_type"], "ESSD");
    assert_eq!(
        &api.set(&from_snap).read(0, 4096).unwrap()[..],
        &[1; 4096][..]
    );
    let mismatch = api
        .post(
            &p("volumes"),
            &admin.token,
            json!({"volume": {"snapshot_id": snap, "volume_type": "SATA"}}),
        )
        .await;
    assert_eq!(mismatch.fault().2, "EVS.2096");
    // A clone holds the head's data.
    let clone = api
        .volume(&admin, json!({"source_volid": vol, "size": 2}))
        .await;
    let cset = api.set(&clone);
    assert_eq!(cset.size(), 2 << 30);
    assert_eq!(&cset.read(0, 4096).unwrap()[..], &[2; 4096][..]);
    assert!(
        set.list_snapshots().unwrap().len() == 1,
        "the clone's temporary snapshot is gone"
    );
    let small = api
        .post(
            &p("volumes"),
            &admin.token,
            json!({"volume": {"source_volid": vol, "size": 0}}),
        )
        .await;
    assert_eq!(small.status, StatusCode::BAD_REQUEST);

    // EVS rollback, both paths.
    for prefix in ["cloudsnapshots", "os-vendor-snapshots"] {
        set.write(0, &[3; 4096]).unwrap();
        let rb = api
            .post(
                &p(&format!("{prefix}/{snap}/rollback")),
                &admin.token,
                json!({"rollback": {"volume_id": vol}}),
            )
            .await;
        assert_eq!(rb.status, StatusCode::ACCEPTED, "{:?}", rb.body);
        assert_eq!(rb.body, json!({"rollback": {"volume_id": vol}}));
        api.wait_status(
            &p(&format!("volumes/{vol}")),
            &admin.token,
            "volume",
            "available",
        )
        .await;
        api.wait_status(
            &p(&format!("snapshots/{snap}")),
            &admin.token,
            "snapshot",
            "available",
        )
        .await;
        assert_eq!(&set.read(0, 4096).unwrap()[..], &[1; 4096][..], "{prefix}");
    }
    let wrong = api
        .post(
            &p(&format!("cloudsnapshots/{snap}/rollback")),
            &admin.token,
            json!({"rollback": {"volume_id": clone}}),
        )
        .await;
    assert_eq!(wrong.status, StatusCode::BAD_REQUEST);
    let unknown = api
        .post(
            &p("cloudsnapshots/7c3d2bd5-d0a4-4a05-9ad3-a1a6e53f4f52/rollback"),
            &admin.token,
            json!({"rollback": {"volume_id": vol}}),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    let no_body = api
        .post(
            &p(&format!("cloudsnapshots/{snap}/rollback")),
            &admin.token,
            json!({"rollback": {}}),
        )
        .await;
    assert_eq!(no_body.status, StatusCode::BAD_REQUEST);

    // Deleting: a volume with snapshots needs cascade.
    let d = api
        .delete(&p(&format!("volumes/{vol}")), &admin.token)
        .await;
    assert_eq!(d.fault().2, "EVS.1046");
    let d = api
        .delete(&p(&format!("volumes/{vol}?cascade=maybe")), &admin.token)
        .await;
    assert_eq!(d.status, StatusCode::BAD_REQUEST);
    let snap2 = api.snapshot(&admin, &vol).await;
    assert_eq!(
        api.delete(&p(&format!("snapshots/{snap2}")), &admin.token)
            .await
            .status,
        StatusCode::ACCEPTED
    );
    api.wait_gone(&p(&format!("snapshots/{snap2}")), &admin.token)
        .await;
    assert_eq!(
        set.list_snapshots().unwrap().len(),
        1,
        "engine snapshot deleted too"
    );
    assert_eq!(
        api.delete(&p(&format!("volumes/{vol}?cascade=true")), &admin.token)
            .await
            .status,
        StatusCode::ACCEPTED
    );
    api.wait_gone(&p(&format!("volumes/{vol}")), &admin.token)
        .await;
    assert_eq!(
        api.get(&p(&format!("snapshots/{snap}")), &admin.token)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    // The copies are independent of their deleted source.
    assert_eq!(
        &api.set(&from_snap).read(0, 4096).unwrap()[..],
        &[1; 4096][..]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn quotas_are_reported_and_enforced() {
    let api = Api::new();
    let admin = api.admin().await;
    let alice = api.tenant(&admin, "alice", "member").await;
    let q = format!("/v2/{}/os-quota-sets/{}", alice.project, alice.project);
    let plain = api.get(&q, &alice.token).await;
    assert_eq!(plain.body["quota_set"]["volumes"], 10);
    for k in [
        "id",
        "volumes",
        "snapshots",
        "backups",
        "per_volume_gigabytes",
        "gigabytes",
        "backup_gigabytes",
        "groups",
    ] {
        assert!(plain.body["quota_set"].get(k).is_some(), "{k}");
    }
    // Members cannot change quotas; admins can.
    let set_q = json!({"quota_set": {"volumes": 2, "gigabytes": 5, "snapshots": 1}});
    assert_eq!(
        api.put(&q, &alice.token, set_q.clone()).await.status,
        StatusCode::FORBIDDEN
    );
    let admin_q = format!("/v2/{}/os-quota-sets/{}", admin.project, alice.project);
    let upd = api.put(&admin_q, &admin.token, set_q).await;
    assert_eq!(upd.status, StatusCode::OK, "{:?}", upd.body);
    assert_eq!(upd.body["quota_set"]["volumes"], 2);
    assert_eq!(
        api.put(
            &admin_q,
            &admin.token,
            json!({"quota_set": {"volumes": -2}})
        )
        .await
        .status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        api.put(&admin_q, &admin.token, json!({"quota_set": {"widgets": 1}}))
            .await
            .status,
        StatusCode::BAD_REQUEST
    );

    let v1 = api.volume(&alice, json!({"size": 2})).await;
    let vols = format!("/v2/{}/volumes", alice.project);
    let too_big = api
        .post(&vols, &alice.token, json!({"volume": {"size": 4}}))
        .await;
    assert_eq!(too_big.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(too_big.headers["retry-after"], "0");
    assert_eq!(
        too_big.fault(),
        ("overLimit".into(), 413, "EVS.5413".into())
    );
    let snap = api.snapshot(&alice, &v1).await;
    let _ = snap;
    let used = api.get(&format!("{q}?usage=True"), &alice.token).await;
    let set = &used.body["quota_set"];
    assert_eq!(
        set["volumes"],
        json!({"limit": 2, "in_use": 1, "reserved": 0})
    );
    assert_eq!(set["gigabytes"]["in_use"], 4, "volume + snapshot GiB");
    assert_eq!(set["snapshots"]["in_use"], 1);
    assert_eq!(set["volumes___DEFAULT__"]["in_use"], 1);
    let snap2 = api
        .post(
            &format!("/v2/{}/snapshots", alice.project),
            &alice.token,
            json!({"snapshot": {"volume_id": v1}}),
        )
        .await;
    assert_eq!(snap2.status, StatusCode::PAYLOAD_TOO_LARGE);
    let grow = action(&api, &alice, &v1, json!({"os-extend": {"new_size": 4}})).await;
    assert_eq!(grow.status, StatusCode::PAYLOAD_TOO_LARGE);
    let bad_usage = api.get(&format!("{q}?usage=sometimes"), &alice.token).await;
    assert_eq!(bad_usage.status, StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread")]
async fn transfers_move_a_volume_between_projects() {
    let api = Api::new();
    let admin = api.admin().await;
    let alice = api.tenant(&admin, "alice", "member").await;
    let bob = api.tenant(&admin, "bob", "member").await;
    let vol = api.volume(&alice, json!({"size": 1})).await;
    let t = |who: &Login, rest: &str| format!("/v2/{}/os-volume-transfer{rest}", who.project);
    let created = api
        .post(
            &t(&alice, ""),
            &alice.token,
            json!({"transfer": {"volume_id": vol, "name": "gift"}}),
        )
        .await;
    assert_eq!(created.status, StatusCode::ACCEPTED, "{:?}", created.body);
    assert_eq!(
        keys(&created.body["transfer"]),
        ["auth_key", "created_at", "id", "links", "name", "volume_id"]
    );
    let id = created.body["transfer"]["id"].as_str().unwrap().to_owned();
    let key = created.body["transfer"]["auth_key"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(key.len(), 16);
    let vpath = format!("/v2/{}/volumes/{vol}", alice.project);
    assert_eq!(
        api.get(&vpath, &alice.token).await.body["volume"]["status"],
        "awaiting-transfer"
    );
    let shown = api.get(&t(&alice, &format!("/{id}")), &alice.token).await;
    assert_eq!(
        keys(&shown.body["transfer"]),
        ["created_at", "id", "links", "name", "volume_id"]
    );
    assert!(shown.body["transfer"].get("auth_key").is_none());
    let listed = api.get(&t(&alice, ""), &alice.token).await;
    assert_eq!(
        keys(&listed.body["transfers"][0]),
        ["id", "links", "name", "volume_id"]
    );
    assert_eq!(
        api.get(&t(&alice, "/detail"), &alice.token).await.body["transfers"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        api.get(&t(&bob, ""), &bob.token).await.body["transfers"],
        json!([])
    );
    // Busy volume: a second transfer is refused.
    let again = api
        .post(
            &t(&alice, ""),
            &alice.token,
            json!({"transfer": {"volume_id": vol}}),
        )
        .await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST);
    // Wrong key, unknown transfer, then the right key.
    let wrong = api
        .post(
            &t(&bob, &format!("/{id}/accept")),
            &bob.token,
            json!({"accept": {"auth_key": "0000"}}),
        )
        .await;
    assert_eq!(wrong.status, StatusCode::BAD_REQUEST);
    let unknown = api
        .post(
            &t(&bob, "/7c3d2bd5-d0a4-4a05-9ad3-a1a6e53f4f52/accept"),
            &bob.token,
            json!({"accept": {"auth_key": key}}),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    let ok = api
        .post(
            &t(&bob, &format!("/{id}/accept")),
            &bob.token,
            json!({"accept": {"auth_key": key}}),
        )
        .await;
    assert_eq!(ok.status, StatusCode::ACCEPTED, "{:?}", ok.body);
    assert_eq!(
        keys(&ok.body["transfer"]),
        ["id", "links", "name", "volume_id"]
    );
    assert_eq!(
        api.get(&vpath, &alice.token).await.status,
        StatusCode::NOT_FOUND,
        "Alice lost it"
    );
    let bobs = api
        .get(&format!("/v2/{}/volumes/{vol}", bob.project), &bob.token)
        .await;
    assert_eq!(bobs.body["volume"]["status"], "available");
    assert_eq!(bobs.body["volume"]["user_id"], bob.user.as_str());
    assert_eq!(
        api.get(&t(&alice, &format!("/{id}")), &alice.token)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    // Withdrawing an offer; volumes with snapshots cannot be offered.
    let offer = api
        .post(
            &t(&bob, ""),
            &bob.token,
            json!({"transfer": {"volume_id": vol}}),
        )
        .await;
    let oid = offer.body["transfer"]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        api.delete(&t(&bob, &format!("/{oid}")), &bob.token)
            .await
            .status,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        api.get(&format!("/v2/{}/volumes/{vol}", bob.project), &bob.token)
            .await
            .body["volume"]["status"],
        "available"
    );
    api.snapshot(&bob, &vol).await;
    let refused = api
        .post(
            &t(&bob, ""),
            &bob.token,
            json!({"transfer": {"volume_id": vol}}),
        )
        .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    let bad = api
        .post(
            &t(&bob, ""),
            &bob.token,
            json!({"transfer": {"volume_id": vol, "name": "  "}}),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let paged = api.get(&t(&bob, "?limit=x"), &bob.token).await;
    assert_eq!(paged.status, StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread")]
async fn types_zones_extensions_and_metrics() {
    let api = Api::new();
    let admin = api.admin().await;
    let p = |rest: &str| format!("/v2/{}/{rest}", admin.project);
    let types = api.get(&p("types"), &admin.token).await;
    let names: Vec<&str> = types.body["volume_types"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["__DEFAULT__", "SATA", "SAS", "SSD", "GPSSD", "ESSD"]
    );
    let sata_id = types.body["volume_types"][1]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        api.get(&p(&format!("types/{sata_id}")), &admin.token)
            .await
            .body["volume_type"]["name"],
        "SATA"
    );
    assert_eq!(
        api.get(&p("types/default"), &admin.token).await.body["volume_type"]["name"],
        "__DEFAULT__"
    );
    assert_eq!(
        api.get(&p("types/nope"), &admin.token).await.status,
        StatusCode::NOT_FOUND
    );
    // A type given by id works at creation.
    let v = api
        .volume(&admin, json!({"size": 1, "volume_type": sata_id}))
        .await;
    assert_eq!(
        api.get(&p(&format!("volumes/{v}")), &admin.token)
            .await
            .body["volume"]["volume_type"],
        "SATA"
    );
    let az = api.get(&p("os-availability-zone"), &admin.token).await;
    assert_eq!(
        az.body,
        json!({"availabilityZoneInfo": [{"zoneName": "nova", "zoneState": {"available": true}}]})
    );
    let ext = api.get(&p("extensions"), &admin.token).await;
    let aliases: Vec<&str> = ext.body["extensions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["alias"].as_str().unwrap())
        .collect();
    assert!(aliases.contains(&"os-volume-transfer"));
    assert!(aliases.contains(&"backups"));
    // The same API under /v3.
    let v3 = api
        .get(&format!("/v3/{}/volumes/{v}", admin.project), &admin.token)
        .await;
    assert_eq!(v3.status, StatusCode::OK);
    assert!(v3.body["volume"]["links"][0]["href"]
        .as_str()
        .unwrap()
        .contains("/v3/"));
    let m = api.call(Method::GET, "/metrics", None, None).await;
    let text = String::from_utf8(m.raw).unwrap();
    assert!(
        text.contains("tripod_volumes{status=\"available\"} 1"),
        "{text}"
    );
    assert!(text.contains("tripod_api_requests_total{method=\"GET\",code=\"200\"}"));
}

#[tokio::test(flavor = "multi_thread")]
async fn noauth_mode_trusts_user_and_project_from_the_token() {
    let api = Api::with(Settings {
        auth: Some(tripod::config::AuthMode::Noauth),
        ..Default::default()
    });
    let a = api
        .post(
            "/v2/proj1/volumes",
            "user1:proj1",
            json!({"volume": {"size": 1}}),
        )
        .await;
    assert_eq!(a.status, StatusCode::ACCEPTED);
    assert_eq!(a.body["volume"]["user_id"], "user1");
    let none = api.call(Method::GET, "/v2/proj1/volumes", None, None).await;
    assert_eq!(none.status, StatusCode::UNAUTHORIZED);
}

/// A crash between a catalog commit and the engine work leaves records in flight; the next
/// start must finish each one (or mark it `error`), never lose or strand it.
#[tokio::test(flavor = "multi_thread")]
async fn startup_finishes_interrupted_operations() {
    use tripod::catalog::{
        Catalog, CatalogRead, PendingOp, SnapshotRecord, SnapshotStatus, VolumeRecord,
        VolumeSource, VolumeStatus,
    };
    let api = Api::new();
    let admin = api.admin().await;
    let grow = api.volume(&admin, json!({"size": 1})).await;
    let doomed = api.volume(&admin, json!({"size": 1})).await;
    let snapped = api.volume(&admin, json!({"size": 1})).await;
    let old_snap = api.snapshot(&admin, &snapped).await;
    api.set(&grow).write(0, &[7; 4096]).unwrap();
    let template: VolumeRecord = api.state.catalog.read(|r| r.get(&grow)).unwrap().unwrap();
    let Api { dir, state, router } = api;
    drop(router);
    assert!(
        state
            .backend
            .wait_idle(std::time::Duration::from_secs(30))
            .await
    );
    drop(state);

    // Forge what a crash at each point leaves behind.
    let fresh = "11111111-2222-4333-8444-555555555555".to_owned();
    let orphan = "66666666-7777-4888-9999-aaaaaaaaaaaa".to_owned();
    let new_snap = "bbbbbbbb-cccc-4ddd-8eee-ffffffffffff".to_owned();
    // A half-made replica directory of the fresh volume.
    std::fs::create_dir_all(dir.path().join("replicas/0").join(&fresh)).unwrap();
    std::fs::write(
        dir.path().join("replicas/0").join(&fresh).join("junk"),
        b"x",
    )
    .unwrap();
    {
        let cat = Catalog::open(&dir.path().join("catalog.redb")).unwrap();
        cat.write(|w| {
            let mut v = w.get::<VolumeRecord>(&grow)?.unwrap();
            v.status = VolumeStatus::Extending;
            v.pending = Some(PendingOp::Extend {
                new_size: 3,
                previous: VolumeStatus::InUse,
            });
            w.put(&v)?;
            let mut v = w.get::<VolumeRecord>(&doomed)?.unwrap();
            v.status = VolumeStatus::Deleting;
            v.pending = Some(PendingOp::Delete);
            w.put(&v)?;
            let mut v = template.clone();
            v.id = fresh.clone();
            v.size = 2;
            v.status = VolumeStatus::Creating;
            v.pending = Some(PendingOp::Create(VolumeSource::Blank));
            w.put(&v)?;
            let mut v = template.clone();
            v.id = orphan.clone();
            v.status = VolumeStatus::Creating;
            v.pending = Some(PendingOp::Create(VolumeSource::Snapshot(
                "99999999-9999-4999-8999-999999999999".into(),
            )));
            w.put(&v)?;
            let mut s = w.get::<SnapshotRecord>(&old_snap)?.unwrap();
            s.status = SnapshotStatus::Deleting;
            w.put(&s)?;
            let mut s2 = s.clone();
            s2.id = new_snap.clone();
            s2.status = SnapshotStatus::Creating;
            w.put(&s2)?;
            Ok::<_, tripod::catalog::CatalogError>(())
        })
        .unwrap();
    }

    let api = Api::open(dir, Settings::default());
    let admin = api.admin().await;
    let p = |rest: &str| format!("/v2/{}/{rest}", admin.project);
    let v = api
        .get(&p(&format!("volumes/{grow}")), &admin.token)
        .await
        .body["volume"]
        .clone();
    assert_eq!(
        (v["status"].as_str(), v["size"].as_u64()),
        (Some("in-use"), Some(3))
    );
    assert_eq!(api.set(&grow).size(), 3 << 30);
    assert_eq!(&api.set(&grow).read(0, 4096).unwrap()[..], &[7; 4096][..]);
    assert_eq!(
        api.get(&p(&format!("volumes/{doomed}")), &admin.token)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert!(!api.dir.path().join("replicas/1").join(&doomed).exists());
    let v = api
        .get(&p(&format!("volumes/{fresh}")), &admin.token)
        .await
        .body["volume"]
        .clone();
    assert_eq!(v["status"], "available");
    assert_eq!(api.set(&fresh).size(), 2 << 30);
    let v = api
        .get(&p(&format!("volumes/{orphan}")), &admin.token)
        .await
        .body["volume"]
        .clone();
    assert_eq!(
        v["status"], "error",
        "a copy whose source is gone is marked error, not lost"
    );
    assert_eq!(
        api.get(&p(&format!("snapshots/{old_snap}")), &admin.token)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let s = api
        .get(&p(&format!("snapshots/{new_snap}")), &admin.token)
        .await
        .body["snapshot"]
        .clone();
    assert_eq!(s["status"], "available");
    let engine: Vec<String> = api
        .set(&snapped)
        .list_snapshots()
        .unwrap()
        .iter()
        .map(|s| s.id.as_str().to_owned())
        .collect();
    assert_eq!(
        engine,
        std::slice::from_ref(&new_snap),
        "engine snapshots match the catalog"
    );
    // An errored volume can be deleted.
    assert_eq!(
        api.delete(&p(&format!("volumes/{orphan}")), &admin.token)
            .await
            .status,
        StatusCode::ACCEPTED
    );
    api.wait_gone(&p(&format!("volumes/{orphan}")), &admin.token)
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn disk_tags_add_replace_remove_list_and_find() {
    let api = Api::new();
    let admin = api.admin().await;
    let bob = api.tenant(&admin, "tags-bob", "member").await;
    let a = api.volume(&admin, json!({"size": 1, "name": "a"})).await;
    let b = api.volume(&admin, json!({"size": 1, "name": "b"})).await;
    let theirs = api.volume(&bob, json!({"size": 1})).await;
    let p = &admin.project;
    let act = |id: &str| format!("/v2/{p}/cloudvolumes/{id}/tags/action");
    let tags = |id: &str| format!("/v2/{p}/cloudvolumes/{id}/tags");

    let r = api
        .post(
            &act(&a),
            &admin.token,
            json!({"action": "create", "tags": [{"key": "env", "value": "prod"}, {"key": "team", "value": " db "}]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.body);
    assert!(r.raw.is_empty());
    // An existing key is overwritten; the older path answers too.
    let r = api
        .post(
            &format!("/v2/{p}/os-vendor-volumes/{a}/tags/action"),
            &admin.token,
            json!({"action": "create", "tags": [{"key": "env", "value": "test"}]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = api.get(&tags(&a), &admin.token).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.body,
        json!({"tags": [{"key": "env", "value": "test"}, {"key": "team", "value": "db"}]})
    );
    api.post(
        &act(&b),
        &admin.token,
        json!({"action": "create", "tags": [{"key": "env", "value": "prod"}]}),
    )
    .await;

    // EVS's limits: key and value characters and lengths, ten per volume; refused whole.
    for bad in [
        json!({"action": "create", "tags": [{"key": "", "value": "x"}]}),
        json!({"action": "create", "tags": [{"key": "k".repeat(37), "value": "x"}]}),
        json!({"action": "create", "tags": [{"key": "a=b", "value": "x"}]}),
        json!({"action": "create", "tags": [{"key": "k", "value": "v".repeat(44)}]}),
        json!({"action": "create", "tags": [{"key": "k", "value": "<script>"}]}),
        json!({"action": "create", "tags": []}),
        json!({"action": "rename", "tags": [{"key": "k"}]}),
        json!({"action": "create", "tags": [{"key": "k"}], "extra": 1}),
    ] {
        let r = api.post(&act(&a), &admin.token, bad.clone()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}");
    }
    let many: Vec<Value> = (0..9)
        .map(|i| json!({"key": format!("k{i}"), "value": ""}))
        .collect();
    let r = api
        .post(
            &act(&a),
            &admin.token,
            json!({"action": "create", "tags": many}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "11 tags must be refused");
    let r = api.get(&tags(&a), &admin.token).await;
    assert_eq!(
        r.body["tags"].as_array().unwrap().len(),
        2,
        "nothing applied"
    );

    // Every key of the project with its values; another project's volume is not there.
    api.post(
        &format!("/v2/{}/cloudvolumes/{theirs}/tags/action", bob.project),
        &bob.token,
        json!({"action": "create", "tags": [{"key": "secret", "value": "x"}]}),
    )
    .await;
    let r = api
        .get(&format!("/v2/{p}/cloudvolumes/tags"), &admin.token)
        .await;
    assert_eq!(
        r.body,
        json!({"tags": {"env": ["prod", "test"], "team": ["db"]}})
    );
    // Each project tags its own volumes; another project's volume is a 404.
    let r = api
        .post(
            &format!("/v2/{}/cloudvolumes/{theirs}/tags/action", bob.project),
            &bob.token,
            json!({"action": "create", "tags": [{"key": "k"}]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = api
        .get(
            &format!("/v2/{}/cloudvolumes/{a}/tags", bob.project),
            &bob.token,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    // Find volumes by tag.
    let query = format!("/v2/{p}/cloudvolumes/resource_instances/action");
    let r = api
        .post(
            &query,
            &admin.token,
            json!({"action": "filter", "tags": [{"key": "env", "values": ["prod"]}]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["total_count"], 1);
    assert_eq!(r.body["resources"][0]["resource_id"], b.as_str());
    assert_eq!(r.body["resources"][0]["resource_detail"]["name"], "b");
    let r = api
        .post(
            &query,
            &admin.token,
            json!({"action": "count", "tags": [{"key": "env"}]}),
        )
        .await;
    assert_eq!(r.body, json!({"total_count": 2}));
    let r = api
        .post(
            &query,
            &admin.token,
            json!({"action": "filter", "tags": [{"key": "env"}], "limit": 1, "offset": 1}),
        )
        .await;
    assert_eq!(r.body["resources"].as_array().unwrap().len(), 1);
    assert_eq!(r.body["total_count"], 2);

    // Delete by key; keys it does not carry are ignored.
    let r = api
        .post(
            &act(&a),
            &admin.token,
            json!({"action": "delete", "tags": [{"key": "env"}, {"key": "nope"}]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = api.get(&tags(&a), &admin.token).await;
    assert_eq!(r.body, json!({"tags": [{"key": "team", "value": "db"}]}));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_status_endpoint_is_for_admins_and_lists_every_project() {
    let api = Api::new();
    let admin = api.admin().await;
    let bob = api.tenant(&admin, "status-bob", "member").await;
    let theirs = api.volume(&bob, json!({"size": 1})).await;
    let r = api
        .get(&format!("/v2/{}/os-tripod-status", bob.project), &bob.token)
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = api
        .get(
            &format!("/v2/{}/os-tripod-status", admin.project),
            &admin.token,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let vols = r.body["volumes"].as_array().unwrap();
    let v = vols.iter().find(|v| v["id"] == theirs.as_str()).unwrap();
    assert_eq!(v["project_id"], bob.project.as_str());
    assert_eq!(r.body["summary"]["volumes"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backups_are_per_tenant_follow_the_rules_and_refuse_bad_requests_clearly() {
    let api = Api::new();
    let admin = api.admin().await;
    let alice = api.tenant(&admin, "alice", "member").await;
    let bob = api.tenant(&admin, "bob", "member").await;
    let vol = api.volume(&alice, json!({"size": 1})).await;
    let p = |who: &Login, rest: &str| format!("/v3/{}/{rest}", who.project);
    api.set(&vol).write(0, &[7u8; 8192]).unwrap();

    // Bad requests: 400 with the member named, 404 for volumes one cannot see.
    for (body, status, needle) in [
        (json!({"backup": {}}), 400, "volume_id"),
        (json!({"backup": {"volume_id": 5}}), 400, "volume_id"),
        (
            json!({"backup": {"volume_id": vol, "bogus": 1}}),
            400,
            "bogus",
        ),
        (
            json!({"backup": {"volume_id": vol, "incremental": "maybe"}}),
            400,
            "incremental",
        ),
        (
            json!({"backup": {"volume_id": vol, "incremental": true}}),
            400,
            "No backups available",
        ),
        (
            json!({"backup": {"volume_id": "not-a-uuid"}}),
            404,
            "could not be found",
        ),
        (json!({"nope": {}}), 400, ""),
    ] {
        let a = api
            .post(&p(&alice, "backups"), &alice.token, body.clone())
            .await;
        assert_eq!(a.status.as_u16(), status, "{body}: {:?}", a.body);
        assert!(a.body.to_string().contains(needle), "{body}: {:?}", a.body);
    }
    let theirs = api
        .post(
            &p(&bob, "backups"),
            &bob.token,
            json!({"backup": {"volume_id": vol}}),
        )
        .await;
    assert_eq!(theirs.status, StatusCode::NOT_FOUND);

    // A backup: `backing-up` then back to `available`; only its project sees it.
    let a = api
        .post(
            &p(&alice, "backups"),
            &alice.token,
            json!({"backup": {"volume_id": vol, "name": "b"}}),
        )
        .await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{:?}", a.body);
    assert_eq!(keys(&a.body["backup"]), ["id", "links", "name"]);
    let id = a.body["backup"]["id"].as_str().unwrap().to_owned();
    let b = api
        .wait_status(
            &p(&alice, &format!("backups/{id}")),
            &alice.token,
            "backup",
            "available",
        )
        .await;
    assert_eq!(
        (b["size"].as_u64(), b["object_count"].as_u64()),
        (Some(1), Some(1))
    );
    assert!(
        b.get("os-backup-project-attr:project_id").is_none(),
        "admins only"
    );
    api.wait_status(
        &p(&alice, &format!("volumes/{vol}")),
        &alice.token,
        "volume",
        "available",
    )
    .await;
    let a = api
        .get(&p(&bob, &format!("backups/{id}")), &bob.token)
        .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    for rest in [
        format!("backups/{id}/restore"),
        format!("os-tripod-backups/{id}/verify"),
    ] {
        let a = api
            .post(&p(&bob, &rest), &bob.token, json!({"restore": {}}))
            .await;
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{rest}");
    }
    let a = api
        .delete(&p(&bob, &format!("backups/{id}")), &bob.token)
        .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    // From a Cinder snapshot (its content, not the volume's now), then an incremental
    // that reads only what changed since that snapshot.
    let snap = api.snapshot(&alice, &vol).await;
    api.set(&vol).write(8 << 20, &[9u8; 4096]).unwrap();
    let a = api
        .post(
            &p(&alice, "backups"),
            &alice.token,
            json!({"backup": {"volume_id": vol, "snapshot_id": snap}}),
        )
        .await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{:?}", a.body);
    let from_snap = a.body["backup"]["id"].as_str().unwrap().to_owned();
    let b2 = api
        .wait_status(
            &p(&alice, &format!("backups/{from_snap}")),
            &alice.token,
            "backup",
            "available",
        )
        .await;
    assert_eq!(b2["snapshot_id"], snap.as_str());
    assert_eq!(
        b2["object_count"], 1,
        "the write after the snapshot is not in it"
    );
    let a = api
        .post(
            &p(&alice, "backups"),
            &alice.token,
            json!({"backup": {"volume_id": vol, "incremental": true}}),
        )
        .await;
    let inc = a.body["backup"]["id"].as_str().unwrap().to_owned();
    let b3 = api
        .wait_status(
            &p(&alice, &format!("backups/{inc}")),
            &alice.token,
            "backup",
            "available",
        )
        .await;
    assert_eq!(b3["object_count"], 2);
    assert_eq!(
        b3["os-tripod-backup:uploaded"]["read_bytes"],
        4 << 20,
        "one range read: the one changed since the snapshot"
    );
    for b in [&inc, &from_snap] {
        let a = api
            .delete(&p(&alice, &format!("backups/{b}")), &alice.token)
            .await;
        assert_eq!(a.status, StatusCode::ACCEPTED, "{:?}", a.body);
        api.wait_gone(&p(&alice, &format!("backups/{b}")), &alice.token)
            .await;
    }
    let a = api
        .delete(&p(&alice, &format!("snapshots/{snap}")), &alice.token)
        .await;
    assert_eq!(a.status, StatusCode::ACCEPTED);
    api.wait_gone(&p(&alice, &format!("snapshots/{snap}")), &alice.token)
        .await;
    let listed = api.get(&p(&bob, "backups/detail"), &bob.token).await;
    assert_eq!(listed.body["backups"], json!([]));
    let listed = api.get(&p(&alice, "backups?name=b"), &alice.token).await;
    assert_eq!(listed.body["backups"].as_array().unwrap().len(), 1);
    let all = api
        .get(&p(&admin, "backups/detail?all_tenants=1"), &admin.token)
        .await;
    assert_eq!(
        all.body["backups"][0]["os-backup-project-attr:project_id"],
        alice.project.as_str()
    );

    // Admin-only actions, restore rules.
    for body in [
        json!({"os-force_delete": {}}),
        json!({"os-reset_status": {"status": "error"}}),
    ] {
        let a = api
            .post(
                &p(&alice, &format!("backups/{id}/action")),
                &alice.token,
                body,
            )
            .await;
        assert_eq!(a.status, StatusCode::FORBIDDEN);
    }
    let a = api
        .get(
            &p(&alice, &format!("backups/{id}/export_record")),
            &alice.token,
        )
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    let small = api.volume(&alice, json!({"size": 1})).await;
    api.post(
        &p(&alice, &format!("volumes/{small}/action")),
        &alice.token,
        json!({"os-reserve": null}),
    )
    .await;
    let a = api
        .post(
            &p(&alice, &format!("backups/{id}/restore")),
            &alice.token,
            json!({"restore": {"volume_id": small}}),
        )
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "attaching: {:?}", a.body);
    let a = api
        .post(
            &p(&alice, &format!("backups/{id}/restore")),
            &alice.token,
            json!({"restore": {"x": 1}}),
        )
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);

    // Bad import records.
    for rec in [
        json!({"backup-record": {"backup_service": "other", "backup_url": "00"}}),
        json!({"backup-record": {"backup_service": "tripod.backup.object_store", "backup_url": "zz"}}),
        json!({"x": 1}),
    ] {
        let a = api
            .post(
                &p(&admin, "backups/import_record"),
                &admin.token,
                rec.clone(),
            )
            .await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{rec}: {:?}", a.body);
    }

    // The backup outlives its volume and restores into a new one.
    let a = api
        .delete(&p(&alice, &format!("volumes/{vol}")), &alice.token)
        .await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{:?}", a.body);
    api.wait_gone(&p(&alice, &format!("volumes/{vol}")), &alice.token)
        .await;
    let a = api
        .get(&p(&alice, &format!("backups/{id}")), &alice.token)
        .await;
    assert_eq!(a.body["backup"]["status"], "available");
    let a = api
        .post(
            &p(&alice, &format!("backups/{id}/restore")),
            &alice.token,
            json!({"restore": {}}),
        )
        .await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{:?}", a.body);
    let new_vol = a.body["restore"]["volume_id"].as_str().unwrap().to_owned();
    api.wait_status(
        &p(&alice, &format!("volumes/{new_vol}")),
        &alice.token,
        "volume",
        "available",
    )
    .await;
    let data = api.set(&new_vol).read(0, 8192).unwrap();
    assert!(data.iter().all(|b| *b == 7));
    let a = api
        .delete(&p(&alice, &format!("backups/{id}")), &alice.token)
        .await;
    assert_eq!(a.status, StatusCode::ACCEPTED);
    api.wait_gone(&p(&alice, &format!("backups/{id}")), &alice.token)
        .await;
}
