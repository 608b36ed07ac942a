//! Volume types and QoS through the admin API (Cinder's types, extra-specs and qos-specs
//! endpoints, `os-retype`), in process on a real catalog: what each call answers, who may
//! make it, and the limits each volume's throttle holds afterwards.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod api_support;

use api_support::{Api, Login};
use axum::http::StatusCode;
use serde_json::{json, Value};
use tripod::qos::{Scope, Unit};

/// The sustained total IOPS limit volume `id`'s throttle holds (`None`: unlimited).
fn iops(api: &Api, id: &str) -> Option<f64> {
    api.state
        .backend
        .registry()
        .limits(id)
        .and_then(|l| l.rate(Scope::Total, Unit::Iops))
        .map(|r| r.per_sec)
}

async fn action(api: &Api, who: &Login, id: &str, body: Value) -> api_support::Answer {
    api.post(
        &format!("/v2/{}/volumes/{id}/action", who.project),
        &who.token,
        body,
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn built_in_types_carry_evs_limits_that_follow_the_size() {
    let api = Api::new();
    let admin = api.admin().await;
    let p = format!("/v2/{}", admin.project);
    let types = api.get(&format!("{p}/types"), &admin.token).await;
    assert_eq!(types.status, StatusCode::OK);
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
    // The default type has no limits.
    assert!(types.body["volume_types"][0]["qos_specs_id"].is_null());
    let ssd = &types.body["volume_types"][3];
    let qos_id = ssd["qos_specs_id"].as_str().unwrap().to_owned();
    let spec = api
        .get(&format!("{p}/qos-specs/{qos_id}"), &admin.token)
        .await;
    assert_eq!(
        spec.body["qos_specs"]["specs"]["total_iops_sec_per_gb"],
        "50"
    );
    assert_eq!(spec.body["qos_specs"]["consumer"], "back-end");

    // An SSD disk of 1 GiB: 1800 + 50 = 1850 IOPS; extended to 3 GiB: 1950.
    let v = api
        .volume(&admin, json!({"size": 1, "volume_type": "SSD"}))
        .await;
    assert_eq!(iops(&api, &v), Some(1850.0));
    let a = action(&api, &admin, &v, json!({"os-extend": {"new_size": 3}})).await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{:?}", a.body);
    api.wait_status(
        &format!("{p}/volumes/{v}"),
        &admin.token,
        "volume",
        "available",
    )
    .await;
    assert_eq!(iops(&api, &v), Some(1950.0));
    // The operator's view shows them.
    let st = api
        .get(&format!("{p}/os-tripod-status"), &admin.token)
        .await;
    let row = st.body["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == v.as_str())
        .unwrap()
        .clone();
    assert_eq!(row["volume_type"], "SSD");
    assert_eq!(row["qos"]["total_iops_sec"], 1950.0);
    assert_eq!(row["qos"]["total_iops_sec_max"], 16000.0);
    assert_eq!(
        row["qos"]["total_bytes_sec"],
        f64::from((120 + 1) << 20) + 524288.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn admins_manage_types_and_qos_specs_and_volumes_follow() {
    let api = Api::new();
    let admin = api.admin().await;
    let user = api.tenant(&admin, "alice", "member").await;
    let p = format!("/v2/{}", admin.project);

    // A spec with a misspelt key is refused, naming it; a good one is created.
    let bad = api
        .post(
            &format!("{p}/qos-specs"),
            &admin.token,
            json!({"qos_specs": {"name": "bad", "total_iops_secs": "100"}}),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(
        bad.body.to_string().contains("total_iops_secs"),
        "{:?}",
        bad.body
    );
    let spec = api
        .post(
            &format!("{p}/qos-specs"),
            &admin.token,
            json!({"qos_specs": {"name": "slow", "consumer": "both", "total_iops_sec": "300"}}),
        )
        .await;
    assert_eq!(spec.status, StatusCode::OK, "{:?}", spec.body);
    let spec_id = spec.body["qos_specs"]["id"].as_str().unwrap().to_owned();
    let dup = api
        .post(
            &format!("{p}/qos-specs"),
            &admin.token,
            json!({"qos_specs": {"name": "slow"}}),
        )
        .await;
    assert_eq!(dup.status, StatusCode::CONFLICT);

    // Members may neither manage types nor see specs.
    let up = format!("/v2/{}", user.project);
    let denied = api
        .post(
            &format!("{up}/types"),
            &user.token,
            json!({"volume_type": {"name": "mine"}}),
        )
        .await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    assert_eq!(
        api.get(&format!("{up}/qos-specs"), &user.token)
            .await
            .status,
        StatusCode::FORBIDDEN
    );

    // A type, associated with the spec.
    let t = api
        .post(
            &format!("{p}/types"),
            &admin.token,
            json!({"volume_type": {"name": "bronze", "description": "slow disks"}}),
        )
        .await;
    assert_eq!(t.status, StatusCode::OK, "{:?}", t.body);
    let type_id = t.body["volume_type"]["id"].as_str().unwrap().to_owned();
    let assoc = api
        .get(
            &format!("{p}/qos-specs/{spec_id}/associate?vol_type_id={type_id}"),
            &admin.token,
        )
        .await;
    assert_eq!(assoc.status, StatusCode::ACCEPTED);
    let a = api
        .get(
            &format!("{p}/qos-specs/{spec_id}/associations"),
            &admin.token,
        )
        .await;
    assert_eq!(a.body["qos_associations"][0]["name"], "bronze");
    // Members see the type but not its spec id.
    let seen = api.get(&format!("{up}/types/{type_id}"), &user.token).await;
    assert_eq!(seen.status, StatusCode::OK);
    assert!(seen.body["volume_type"].get("qos_specs_id").is_none());

    // A member's volume of that type is throttled by it.
    let v = api
        .volume(&user, json!({"size": 1, "volume_type": "bronze"}))
        .await;
    assert_eq!(iops(&api, &v), Some(300.0));

    // Changing the spec reaches the volume at once; so does a type's qos: extra spec.
    let up_spec = api
        .put(
            &format!("{p}/qos-specs/{spec_id}"),
            &admin.token,
            json!({"qos_specs": {"total_iops_sec": "150"}}),
        )
        .await;
    assert_eq!(up_spec.status, StatusCode::OK, "{:?}", up_spec.body);
    assert_eq!(iops(&api, &v), Some(150.0));
    let es = api
        .post(
            &format!("{p}/types/{type_id}/extra_specs"),
            &admin.token,
            json!({"extra_specs": {"qos:total_iops_sec": "75"}}),
        )
        .await;
    assert_eq!(es.status, StatusCode::OK, "{:?}", es.body);
    assert_eq!(iops(&api, &v), Some(75.0));
    let bad_es = api
        .post(
            &format!("{p}/types/{type_id}/extra_specs"),
            &admin.token,
            json!({"extra_specs": {"qos:total_iops_sec": "fast"}}),
        )
        .await;
    assert_eq!(bad_es.status, StatusCode::BAD_REQUEST);
    let del = api
        .delete(
            &format!("{p}/types/{type_id}/extra_specs/qos:total_iops_sec"),
            &admin.token,
        )
        .await;
    assert_eq!(del.status, StatusCode::ACCEPTED);
    assert_eq!(iops(&api, &v), Some(150.0));

    // A front-end spec is the hypervisor's to enforce.
    let fe = api
        .put(
            &format!("{p}/qos-specs/{spec_id}"),
            &admin.token,
            json!({"qos_specs": {"consumer": "front-end"}}),
        )
        .await;
    assert_eq!(fe.status, StatusCode::OK);
    assert_eq!(iops(&api, &v), None);
    api.put(
        &format!("{p}/qos-specs/{spec_id}"),
        &admin.token,
        json!({"qos_specs": {"consumer": "back-end"}}),
    )
    .await;
    assert_eq!(iops(&api, &v), Some(150.0));

    // A spec in use is deleted only by force (its types lose it); a type in use not at all.
    let busy = api
        .delete(&format!("{p}/qos-specs/{spec_id}"), &admin.token)
        .await;
    assert_eq!(busy.status, StatusCode::BAD_REQUEST);
    let in_use = api
        .delete(&format!("{p}/types/{type_id}"), &admin.token)
        .await;
    assert_eq!(in_use.status, StatusCode::BAD_REQUEST);
    assert!(in_use.body.to_string().contains("still in use"));
    let forced = api
        .delete(&format!("{p}/qos-specs/{spec_id}?force=true"), &admin.token)
        .await;
    assert_eq!(forced.status, StatusCode::ACCEPTED);
    assert_eq!(iops(&api, &v), None);

    // A rename follows into the volume's record.
    let r = api
        .put(
            &format!("{p}/types/{type_id}"),
            &admin.token,
            json!({"volume_type": {"name": "copper"}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let shown = api.get(&format!("{up}/volumes/{v}"), &user.token).await;
    assert_eq!(shown.body["volume"]["volume_type"], "copper");
    // The default type can be neither deleted nor renamed, and limits nothing.
    let default = api.get(&format!("{p}/types/default"), &admin.token).await;
    let default_id = default.body["volume_type"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(default.body["volume_type"]["name"], "__DEFAULT__");
    let d = api
        .delete(&format!("{p}/types/{default_id}"), &admin.token)
        .await;
    assert_eq!(d.status, StatusCode::BAD_REQUEST);
    let r = api
        .put(
            &format!("{p}/types/{default_id}"),
            &admin.token,
            json!({"volume_type": {"name": "plain"}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let plain = api.volume(&user, json!({"size": 1})).await;
    assert_eq!(iops(&api, &plain), None);
}

#[tokio::test(flavor = "multi_thread")]
async fn retype_applies_the_new_limits_and_keeps_cinders_rules() {
    let api = Api::new();
    let admin = api.admin().await;
    let p = format!("/v2/{}", admin.project);
    let v = api
        .volume(&admin, json!({"size": 10, "volume_type": "SAS"}))
        .await;
    // SAS at 10 GiB: 1800 + 8 x 10.
    assert_eq!(iops(&api, &v), Some(1880.0));
    let a = action(
        &api,
        &admin,
        &v,
        json!({"os-retype": {"new_type": "ESSD", "migration_policy": "never"}}),
    )
    .await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{:?}", a.body);
    // ESSD at 10 GiB: 1800 + 50 x 10; the status never left available.
    assert_eq!(iops(&api, &v), Some(2300.0));
    let shown = api.get(&format!("{p}/volumes/{v}"), &admin.token).await;
    assert_eq!(shown.body["volume"]["volume_type"], "ESSD");
    assert_eq!(shown.body["volume"]["status"], "available");

    // Same type, unknown type, bad policy.
    let same = action(&api, &admin, &v, json!({"os-retype": {"new_type": "ESSD"}})).await;
    assert_eq!(same.status, StatusCode::BAD_REQUEST);
    let unknown = action(&api, &admin, &v, json!({"os-retype": {"new_type": "gold"}})).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    let policy = action(
        &api,
        &admin,
        &v,
        json!({"os-retype": {"new_type": "SSD", "migration_policy": "sometimes"}}),
    )
    .await;
    assert_eq!(policy.status, StatusCode::BAD_REQUEST);

    // In use (attached) is fine; the new type's quota is checked first.
    let at = action(
        &api,
        &admin,
        &v,
        json!({"os-attach": {"mountpoint": "/dev/vdb", "host_name": "h1"}}),
    )
    .await;
    assert_eq!(at.status, StatusCode::ACCEPTED, "{:?}", at.body);
    let q = api
        .put(
            &format!("{p}/os-quota-sets/{}", admin.project),
            &admin.token,
            json!({"quota_set": {"gigabytes_SSD": 5}}),
        )
        .await;
    assert_eq!(q.status, StatusCode::OK, "{:?}", q.body);
    let over = action(&api, &admin, &v, json!({"os-retype": {"new_type": "SSD"}})).await;
    assert_eq!(
        over.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{:?}",
        over.body
    );
    assert_eq!(iops(&api, &v), Some(2300.0));
    let ok = action(&api, &admin, &v, json!({"os-retype": {"new_type": "SAS"}})).await;
    assert_eq!(ok.status, StatusCode::ACCEPTED, "{:?}", ok.body);
    let shown = api.get(&format!("{p}/volumes/{v}"), &admin.token).await;
    assert_eq!(shown.body["volume"]["status"], "in-use");
    assert_eq!(iops(&api, &v), Some(1880.0));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_type_can_ask_for_every_write_to_be_synced() {
    let api = Api::new();
    let admin = api.admin().await;
    let p = format!("/v2/{}", admin.project);
    let bad = api
        .post(
            &format!("{p}/types"),
            &admin.token,
            json!({"volume_type": {"name": "db", "extra_specs": {"durability": "always"}}}),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let t = api
        .post(
            &format!("{p}/types"),
            &admin.token,
            json!({"volume_type": {"name": "db", "extra_specs": {"durability": "sync"}}}),
        )
        .await;
    assert_eq!(t.status, StatusCode::OK, "{:?}", t.body);
    let v = api
        .volume(&admin, json!({"size": 1, "volume_type": "db"}))
        .await;
    // The open set syncs every write; the operator's view says so.
    assert!(api.set(&v).syncs_every_write());
    let st = api
        .get(&format!("{p}/os-tripod-status"), &admin.token)
        .await;
    let row = st.body["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == v.as_str())
        .unwrap()
        .clone();
    assert_eq!(row["durability"], "sync");
    // Retyped to the default type: durable at the next flush again, on the open set.
    let a = action(
        &api,
        &admin,
        &v,
        json!({"os-retype": {"new_type": "__DEFAULT__"}}),
    )
    .await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{:?}", a.body);
    assert!(!api.set(&v).syncs_every_write());
    // And back, through a change of the type's extra spec.
    action(&api, &admin, &v, json!({"os-retype": {"new_type": "db"}})).await;
    let type_id = t.body["volume_type"]["id"].as_str().unwrap();
    let es = api
        .post(
            &format!("{p}/types/{type_id}/extra_specs"),
            &admin.token,
            json!({"extra_specs": {"durability": "flush"}}),
        )
        .await;
    assert_eq!(es.status, StatusCode::OK);
    assert!(!api.set(&v).syncs_every_write());
}
