//! The Withings simulator against the OpenAPI description: field names of every served
//! object, the envelope on errors, rotation semantics, lenient `userid`.

use crate::common;

use serde_json::Value;
use wearbridge::simulator::{self, Simulator};

const SPEC: &str = include_str!("../fixtures/withings-openapi.subset.json");

/// Fields the spec does not list but the live API is known to send.
const LIVE_EXTRAS: &[&str] = &["timezone", "modelid"];

fn assert_declared(object: &Value, schema: &str) {
    let spec: Value = serde_json::from_str(SPEC).unwrap();
    let props = spec["schemas"][schema]["properties"].as_object().unwrap();
    for key in object.as_object().unwrap().keys() {
        assert!(
            props.contains_key(key) || LIVE_EXTRAS.contains(&key.as_str()),
            "{schema}.{key} is not in the OpenAPI description"
        );
    }
}

async fn post(sim: &Simulator, path: &str, token: Option<&str>, form: &[(&str, &str)]) -> Value {
    let mut req = crate::common::http().post(format!("{}{path}", sim.withings_api_base())).form(form);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.unwrap();
    assert_eq!(r.status(), 200, "Withings answers HTTP 200, errors included");
    r.json().await.unwrap()
}

async fn refresh(sim: &Simulator, refresh_token: &str) -> Value {
    post(
        sim,
        "/v2/oauth2",
        None,
        &[
            ("action", "requesttoken"),
            ("grant_type", "refresh_token"),
            ("client_id", simulator::CLIENT_ID),
            ("client_secret", simulator::CLIENT_SECRET),
            ("refresh_token", refresh_token),
        ],
    )
    .await
}

#[tokio::test]
async fn served_objects_use_documented_fields() {
    let sim = common::simulator(2, 51).await;
    let token = refresh(&sim, &sim.people()[0].withings_refresh_token).await;
    assert_eq!(token["status"], 0);
    let at = token["body"]["access_token"].as_str().unwrap().to_owned();
    let t = Some(at.as_str());
    let now = common::now();
    let since = (now - chrono::TimeDelta::days(5)).timestamp().to_string();
    let meas = post(&sim, "/measure", t, &[("action", "getmeas"), ("lastupdate", &since)]).await;
    assert_eq!(meas["status"], 0);
    for g in meas["body"]["measuregrps"].as_array().unwrap() {
        assert_declared(g, "measuregrp_object");
        for m in g["measures"].as_array().unwrap() {
            assert_declared(m, "measure_object");
        }
    }
    let (from, to) = ((now - chrono::TimeDelta::days(5)).date_naive().to_string(), now.date_naive().to_string());
    let act =
        post(&sim, "/v2/measure", t, &[("action", "getactivity"), ("startdateymd", &from), ("enddateymd", &to)]).await;
    for a in act["body"]["activities"].as_array().unwrap() {
        assert_declared(a, "activity_object");
    }
    assert!(act["body"]["more"].is_boolean());
    let sleep = post(&sim, "/v2/sleep", t, &[("action", "getsummary"), ("lastupdate", &since)]).await;
    for s in sleep["body"]["series"].as_array().unwrap() {
        assert_declared(s, "sleep_summary_object");
        assert_declared(&s["data"], "sleep_summary_data");
    }
    let dev = post(&sim, "/v2/user", t, &[("action", "getdevice")]).await;
    for d in dev["body"]["devices"].as_array().unwrap() {
        assert_declared(d, "user_device_object");
    }
    let start = (now - chrono::TimeDelta::days(3)).timestamp().to_string();
    let end = now.timestamp().to_string();
    let intraday = post(
        &sim,
        "/v2/measure",
        t,
        &[("action", "getintradayactivity"), ("startdate", &start), ("enddate", &end), ("data_fields", "heart_rate")],
    )
    .await;
    let keys: Vec<i64> = intraday["body"]["series"].as_object().unwrap().keys().map(|k| k.parse().unwrap()).collect();
    let span = keys.iter().max().unwrap() - keys.iter().min().unwrap();
    assert!(span <= 86_400, "only the first 24 hours are served: {span}");
}

#[tokio::test]
async fn errors_are_enveloped() {
    let sim = common::simulator(1, 52).await;
    let bad = post(&sim, "/measure", Some("nope"), &[("action", "getmeas")]).await;
    assert_eq!(bad["status"], 401);
    let token = refresh(&sim, &sim.people()[0].withings_refresh_token).await;
    let at = token["body"]["access_token"].as_str().unwrap().to_owned();
    let unknown = post(&sim, "/measure", Some(&at), &[("action", "getmeasx")]).await;
    assert_eq!(unknown["status"], 2554);
    let invalid = post(&sim, "/v2/measure", Some(&at), &[("action", "getactivity")]).await;
    assert_eq!(invalid["status"], 503);
    assert!(invalid["error"].as_str().unwrap().starts_with("Invalid Params"));
    let forged = refresh(&sim, "forged").await;
    assert_eq!(forged["status"], 503);
}

#[tokio::test]
async fn refresh_tokens_rotate_and_die_when_the_new_access_token_is_used() {
    let sim = common::simulator(2, 53).await;
    let first = sim.people()[0].withings_refresh_token.clone();
    let a = refresh(&sim, &first).await;
    let new_refresh = a["body"]["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(new_refresh, first);
    assert!(a["body"]["userid"].is_number());
    // Until the new access token is used, the old refresh token still works.
    let b = refresh(&sim, &first).await;
    assert_eq!(b["status"], 0);
    let at = b["body"]["access_token"].as_str().unwrap().to_owned();
    assert_eq!(post(&sim, "/v2/user", Some(&at), &[("action", "getdevice")]).await["status"], 0);
    assert_eq!(refresh(&sim, &first).await["status"], 503, "dead once the new access token was used");
    // The other person's userid comes as a string.
    let c = refresh(&sim, &sim.people()[1].withings_refresh_token).await;
    assert!(c["body"]["userid"].is_string());
}
