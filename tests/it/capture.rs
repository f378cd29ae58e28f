//! Local capture (issue 21): Wi-Fi scales posting to wearbridge's capture listener, as an
//! emulated Fitbit Aria (protocol v3) and Withings WBS01 send them.
//!
//! - An Aria upload with 3 readings for 2 people (and a guest's) becomes 3 body-weight
//!   messages under the right people's subjects, none for the guest, committed before the
//!   answer; the answer parses back with the fact sheet's layout and CRC, naming the users.
//! - A repeated upload (the scale resends its cache) publishes nothing new.
//! - Bad CRC, truncation, an oversize body and an unknown MAC are refused, nothing stored.
//! - A WBS01 session (once, session new, measure store, session delete) stores a weight.

use crate::common;

use std::sync::Arc;

use secrecy::SecretString;
use serde_json::Value;
use wearbridge::clock::Clock;
use wearbridge::config::Loaded;
use wearbridge::server::capture::{Capture, serve};
use wearbridge::sources::local::{self, aria};
use wearbridge::store::{SqlStore, Store, TokenCipher};

struct Rig {
    base: String,
    store: Arc<SqlStore>,
    _stop: tokio_util::sync::DropGuard,
    _dir: tempfile::TempDir,
    _sim: wearbridge::simulator::Simulator,
}

async fn rig() -> Rig {
    let sim = common::simulator(1, 2121).await;
    let dir = tempfile::tempdir().unwrap();
    let settings = common::settings(&sim, &dir, "1d");
    let clock = Clock::pinned(common::now());
    let store = Arc::new(
        SqlStore::open(&settings.store.url, TokenCipher::new([3; 32])).await.unwrap().with_clock(clock.clone()),
    );
    let pipeline = Arc::new(common::pipeline_on(&Loaded::from_settings(settings), store.clone(), &clock));
    let port = common::free_port();
    let shutdown = wearbridge::retry::CancellationToken::new();
    let listen = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    serve(listen, Capture::new(store.clone(), pipeline, clock), shutdown.clone()).await.unwrap();
    Rig { base: format!("http://127.0.0.1:{port}"), store, _stop: shutdown.drop_guard(), _dir: dir, _sim: sim }
}

fn reading(user: u32, grams: u32, minutes_ago: u32) -> aria::Reading {
    let now = common::now().timestamp() as u32;
    aria::Reading {
        impedance: 480,
        weight_grams: grams,
        time: now - 60 * minutes_ago,
        user,
        fat1: 0,
        covariance: 0,
        fat2: 0,
    }
}

const MAC: [u8; 6] = [0x00, 0x1d, 0xc9, 0x12, 0x34, 0x56];

fn upload(readings: Vec<aria::Reading>) -> Vec<u8> {
    aria::encode(&aria::Upload {
        battery_percent: 80,
        mac: MAC,
        auth: [0x42; 16],
        firmware: 39,
        scale_time: common::now().timestamp() as u32,
        readings,
    })
}

/// Body-weight messages in the outbox: (subject, kg).
async fn weights(store: &SqlStore) -> Vec<(String, f64)> {
    let mut out: Vec<(String, f64)> = store
        .outbox_pending(1000)
        .await
        .unwrap()
        .into_iter()
        .map(|p| serde_json::from_str::<Value>(&p.entry.payload).unwrap())
        .filter(|m| m["header"]["schema_id"]["name"] == "body-weight")
        .map(|m| (m["subject"].as_str().unwrap().to_owned(), m["body"]["body_weight"]["value"].as_f64().unwrap()))
        .collect();
    out.sort_by(|a, b| a.1.total_cmp(&b.1));
    out
}

async fn post(base: &str, path: &str, body: Vec<u8>) -> reqwest::Response {
    common::http()
        .post(format!("{base}{path}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn an_aria_upload_becomes_the_right_peoples_weights_once() {
    let rig = rig().await;
    let store = &rig.store;
    // Ann also has a Fitbit account: her scale publishes under her one subject.
    store.add_account("ann", wearbridge::sources::fitbit::PROVIDER, &SecretString::from("r")).await.unwrap();
    store.add_scale("bathroom", "aria", "00:1d:c9:12:34:56").await.unwrap();
    store.assign_scale_slot("bathroom", 1, "ann").await.unwrap();
    store.assign_scale_slot("bathroom", 2, "bob").await.unwrap();
    let http = common::http();
    assert_eq!(
        http.get(format!("{}/scale/register?serialNumber=001DC9123456", rig.base)).send().await.unwrap().status(),
        200
    );
    let validate = http.get(format!("{}/scale/validate", rig.base)).send().await.unwrap();
    assert_eq!(validate.text().await.unwrap(), "T");

    // The newest reading first, then the cache: ann twice, bob once, a guest.
    let body =
        upload(vec![reading(1, 72_500, 1), reading(0, 90_000, 30), reading(1, 72_350, 1440), reading(2, 81_000, 60)]);
    let answer = post(&rig.base, "/scale/upload", body.clone()).await;
    assert_eq!(answer.status(), 200);
    let length: usize = answer.headers()["content-length"].to_str().unwrap().parse().unwrap();
    let bytes = answer.bytes().await.unwrap();
    assert_eq!(bytes.len(), length);
    let parsed = aria::parse_response(&bytes).unwrap();
    assert_eq!(i64::from(parsed.server_time), common::now().timestamp(), "the scale's clock is set");
    let users: Vec<(u32, &str, u32, u32)> =
        parsed.users.iter().map(|u| (u.id, u.name.as_str(), u.min_grams, u.max_grams)).collect();
    // Windows around each slot's last weight (the newest reading), as the scale picks by them.
    assert_eq!(users, [(1, "ANN", 68_500, 76_500), (2, "BOB", 77_000, 85_000)]);

    // Committed before the answer: three weights, two people, no guest.
    let ann = common::subject_of(store, "ann", local::PROVIDER, "ann").await;
    let bob = common::subject_of(store, "bob", local::PROVIDER, "bob").await;
    let ann_fitbit = common::subject_of(store, "ann", wearbridge::sources::fitbit::PROVIDER, "any").await;
    assert_eq!(ann, ann_fitbit, "one subject per person across the scale and Fitbit");
    assert_ne!(ann, bob);
    let got = weights(store).await;
    assert_eq!(got, [(ann.clone(), 72.3), (ann.clone(), 72.5), (bob.clone(), 81.0)], "{got:?}");
    let payloads: Vec<String> = store.outbox_pending(100).await.unwrap().into_iter().map(|p| p.entry.payload).collect();
    for p in &payloads {
        for secret in ["001dc9123456", "00:1d:c9", "001DC9", "bathroom", "ann", "bob"] {
            assert!(!p.contains(secret), "{secret} in {p}");
        }
    }

    // The scale did not hear the answer and resends everything: nothing new.
    assert_eq!(post(&rig.base, "/scale/upload", body).await.status(), 200);
    assert_eq!(weights(store).await.len(), 3);
    // A settings fetch (no readings) gets the same full answer.
    let fetch = post(&rig.base, "/scale/upload", upload(Vec::new())).await;
    assert_eq!(aria::parse_response(&fetch.bytes().await.unwrap()).unwrap().users.len(), 2);
}

#[tokio::test]
async fn broken_uploads_and_unknown_scales_are_refused_and_store_nothing() {
    let rig = rig().await;
    rig.store.add_scale("bathroom", "aria", "00:1d:c9:12:34:56").await.unwrap();
    rig.store.assign_scale_slot("bathroom", 1, "ann").await.unwrap();
    use wearbridge::simulator::scale::{AriaScale, Broken};
    let scale = AriaScale { mac: MAC, clock: common::now().timestamp() as u32 };
    let good = upload(vec![reading(1, 72_500, 1)]);
    for (body, status) in [
        (scale.broken(Broken::BadCrc, 1), 400),
        (scale.broken(Broken::Truncated, 1), 400),
        (good[..20].to_vec(), 400),
        (Vec::new(), 400),
        (scale.broken(Broken::Oversize, 1), 413),
        (scale.broken(Broken::UnknownMac, 1), 403),
    ] {
        let len = body.len();
        assert_eq!(post(&rig.base, "/scale/upload", body).await.status(), status, "{len} bytes");
    }
    assert!(weights(&rig.store).await.is_empty());
    // And the listener is still up.
    assert_eq!(post(&rig.base, "/scale/upload", good).await.status(), 200);
    assert_eq!(weights(&rig.store).await.len(), 1);
}

#[tokio::test]
async fn a_wbs01_session_stores_a_weight() {
    let rig = rig().await;
    rig.store.add_scale("hall", "wbs01", "00:24:e4:01:02:03").await.unwrap();
    rig.store.assign_scale_slot("hall", 1234, "carol").await.unwrap();
    let form = |pairs: &[(&str, &str)]| {
        let mut s = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in pairs {
            s.append_pair(k, v);
        }
        s.finish().into_bytes()
    };
    let json = |r: reqwest::Response| async move { serde_json::from_str::<Value>(&r.text().await.unwrap()).unwrap() };

    let once = json(post(&rig.base, "/cgi-bin/once", form(&[("action", "get")])).await).await;
    let nonce = once["body"]["once"].as_str().unwrap();
    assert!(nonce.len() == 17 && nonce.as_bytes()[8] == b'-', "{nonce}");
    let new = [("action", "new"), ("auth", "00:24:E4:01:02:03"), ("hash", "0123456789abcdef0123456789abcdef")];
    let session = json(post(&rig.base, "/cgi-bin/session", form(&new)).await).await;
    assert_eq!(session["status"], 0);
    assert_eq!(session["body"]["sp"]["users"][0]["sn"], "CAR");
    assert!(session["body"]["syp"].get("blc").is_none(), "no firmware push");
    let id = session["body"]["sessionid"].as_str().unwrap().to_owned();
    let now = common::now().timestamp().to_string();
    let measures = r#"{"measures":[{"value":66850,"type":1,"unit":-3}]}"#;
    let store = [
        ("action", "store"),
        ("sessionid", id.as_str()),
        ("macaddress", "00:24:e4:01:02:03"),
        ("userid", "1234"),
        ("meastime", now.as_str()),
        ("devtype", "1"),
        ("attribstatus", "0"),
        ("measures", measures),
    ];
    let ack = json(post(&rig.base, "/cgi-bin/measure", form(&store)).await).await;
    assert_eq!(ack["status"], 0);
    let carol = common::subject_of(&rig.store, "carol", local::PROVIDER, "carol").await;
    let got = weights(&rig.store).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, carol);
    assert!((got[0].1 - 66.85).abs() <= 0.051, "{got:?}");
    // The WS-50's variant: `/cgi-bin/v2/measure`, a group with its own time, an item as
    // mantissa and exponent.
    let earlier = common::now().timestamp() - 600;
    let grouped = format!(
        r#"{{"measuregrps":[{{"meastime":{earlier},"measures":[{{"data":{{"mantissa":6702,"exponent":-2}},"type":1}}]}}]}}"#
    );
    let mut v2 = store;
    v2[7] = ("measuregrps", grouped.as_str());
    let ack = json(post(&rig.base, "/cgi-bin/v2/measure", form(&v2)).await).await;
    assert_eq!(ack["status"], 0);
    let got = weights(&rig.store).await;
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(got.iter().any(|(s, kg)| *s == carol && (kg - 67.02).abs() <= 0.051), "{got:?}");
    let done = json(post(&rig.base, "/cgi-bin/session", form(&[("action", "delete"), ("sessionid", &id)])).await).await;
    assert_eq!(done["status"], 0);

    // An unknown scale, and a malformed store, are refused; nothing more is stored.
    let stranger = [("action", "new"), ("auth", "00:24:e4:09:09:09")];
    assert_eq!(post(&rig.base, "/cgi-bin/session", form(&stranger)).await.status(), 403);
    let mut other = store;
    other[2] = ("macaddress", "00:24:e4:09:09:09");
    assert_eq!(post(&rig.base, "/cgi-bin/measure", form(&other)).await.status(), 403);
    assert_eq!(post(&rig.base, "/cgi-bin/measure", form(&[("action", "store")])).await.status(), 400);
    assert_eq!(weights(&rig.store).await.len(), 2);
}

#[tokio::test]
async fn a_full_cache_of_seventeen_readings_is_taken_once() {
    use wearbridge::simulator::scale::AriaScale;
    let rig = rig().await;
    rig.store.add_scale("bathroom", "aria", "00:1d:c9:12:34:56").await.unwrap();
    rig.store.assign_scale_slot("bathroom", 3, "dee").await.unwrap();
    let scale = AriaScale { mac: MAC, clock: common::now().timestamp() as u32 };
    let body = scale.full_cache(3, 64_000);
    assert_eq!(aria::parse(&body).unwrap().readings.len(), 17);
    assert_eq!(post(&rig.base, "/scale/upload", body.clone()).await.status(), 200);
    assert_eq!(weights(&rig.store).await.len(), 17);
    assert_eq!(post(&rig.base, "/scale/upload", body).await.status(), 200);
    assert_eq!(weights(&rig.store).await.len(), 17, "resent: nothing new");
    // A scale whose clock is a day behind: its readings are corrected, not dated a day early.
    let late = AriaScale { mac: MAC, clock: scale.clock - 86_400 };
    let body = late.upload(vec![late.reading(3, 65_400, 0)]);
    assert_eq!(post(&rig.base, "/scale/upload", body).await.status(), 200);
    let payloads: Vec<Value> = rig
        .store
        .outbox_pending(100)
        .await
        .unwrap()
        .into_iter()
        .map(|p| serde_json::from_str(&p.entry.payload).unwrap())
        .filter(|m: &Value| m["body"]["body_weight"]["value"] == 65.4)
        .collect();
    assert_eq!(payloads.len(), 1);
    let at = payloads[0]["body"]["effective_time_frame"]["date_time"].as_str().unwrap();
    let at = chrono::DateTime::parse_from_rfc3339(at).unwrap();
    assert!((common::now() - at.with_timezone(&chrono::Utc)).num_hours().abs() <= 1, "corrected to now: {at}");
}

#[tokio::test]
async fn people_who_leave_drop_off_the_scale_and_others_go_on() {
    use wearbridge::simulator::scale::AriaScale;
    let rig = rig().await;
    let store = &rig.store;
    store.add_scale("bathroom", "aria", "00:1d:c9:12:34:56").await.unwrap();
    store.assign_scale_slot("bathroom", 1, "ann").await.unwrap();
    store.assign_scale_slot("bathroom", 2, "bob").await.unwrap();
    let scale = AriaScale { mac: MAC, clock: common::now().timestamp() as u32 };
    let first = scale.upload(vec![scale.reading(1, 72_500, 5), scale.reading(2, 81_000, 4)]);
    assert_eq!(post(&rig.base, "/scale/upload", first).await.status(), 200);
    // Bob leaves: his slot, name and last weight go; the scale is not blocked.
    store.remove_account("bob").await.unwrap();
    assert_eq!(store.scales().await.unwrap()[0].slots, [(1, "ann".to_owned())]);
    let next = scale.upload(vec![scale.reading(1, 72_400, 1), scale.reading(2, 81_200, 2)]);
    let answer = post(&rig.base, "/scale/upload", next).await;
    assert_eq!(answer.status(), 200);
    let users = aria::parse_response(&answer.bytes().await.unwrap()).unwrap().users;
    assert_eq!(users.iter().map(|u| u.name.as_str()).collect::<Vec<_>>(), ["ANN"]);
    let kg: Vec<f64> = weights(store).await.into_iter().map(|(_, kg)| kg).collect();
    assert_eq!(kg, [72.4, 72.5], "bob's were withdrawn with him, and his new one is not taken");
    // A slot given to someone else starts without the last person's weight window.
    store.assign_scale_slot("bathroom", 1, "cat").await.unwrap();
    let fetch = post(&rig.base, "/scale/upload", scale.upload(Vec::new())).await;
    let users = aria::parse_response(&fetch.bytes().await.unwrap()).unwrap().users;
    assert_eq!((users[0].name.as_str(), users[0].min_grams, users[0].max_grams), ("CAT", 5_000, 250_000));
}

#[tokio::test]
async fn a_scale_with_another_auth_code_or_no_session_is_refused() {
    let rig = rig().await;
    rig.store.add_scale("bathroom", "aria", "00:1d:c9:12:34:56").await.unwrap();
    rig.store.assign_scale_slot("bathroom", 1, "ann").await.unwrap();
    assert_eq!(post(&rig.base, "/scale/upload", upload(vec![reading(1, 72_500, 1)])).await.status(), 200);
    // The same MAC (it is broadcast) with another auth code: refused, nothing taken.
    let mut forged = aria::parse(&upload(vec![reading(1, 99_000, 1)])).unwrap();
    forged.auth = [0x13; 16];
    assert_eq!(post(&rig.base, "/scale/upload", aria::encode(&forged)).await.status(), 403);
    assert_eq!(weights(&rig.store).await.len(), 1);
    // A WBS01 measure outside a session the scale opened: refused.
    rig.store.add_scale("hall", "wbs01", "00:24:e4:01:02:03").await.unwrap();
    rig.store.assign_scale_slot("hall", 7, "ann").await.unwrap();
    let now = common::now().timestamp().to_string();
    let measure = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("action", "store")
        .append_pair("sessionid", "1-2-3")
        .append_pair("macaddress", "00:24:e4:01:02:03")
        .append_pair("userid", "7")
        .append_pair("meastime", &now)
        .append_pair("measures", r#"{"measures":[{"value":99000,"type":1,"unit":-3}]}"#)
        .finish();
    assert_eq!(post(&rig.base, "/cgi-bin/measure", measure.into_bytes()).await.status(), 403);
    assert_eq!(weights(&rig.store).await.len(), 1);
}
