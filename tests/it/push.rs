//! Push notifications end to end (issue 20): the daemon (`wearbridge run`, a process of
//! its own) on SQLite and on PostgreSQL, the simulator's providers notifying it.
//!
//! - `push setup` creates the Google Health subscriber; the simulator verifies the
//!   endpoint as Google does (201 with the secret, 401/403 without it).
//! - The daemon subscribes each Withings account itself (the simulator probes the
//!   callback with a HEAD first).
//! - A weight added upstream is published within 10 s of its notification, with no poll
//!   in between (every dataset's interval is a day); 100 duplicate notifications in a
//!   burst cause one read; a notification of an earlier reading arriving later is read,
//!   and one of a reading days old (beyond the look-back) too, through its interval.
//! - Forged Google notifications (no secret, a wrong one, a bad signature) change nothing
//!   and are counted; an unknown user is counted and ignored; a Withings notification
//!   without the callback's secret segment finds nothing.
//! - `users remove` ends the Withings subscriptions.

use crate::common;
use crate::postgres::wait_until;

use std::path::Path;
use std::time::{Duration, Instant};

use wearbridge::simulator::{self, Simulator};
use wearbridge::sources::fitbit::PROVIDER as FITBIT;
use wearbridge::sources::withings::PROVIDER as WITHINGS;

const SECRET: &str = "Bearer push-test-secret";

fn write_config(sim: &Simulator, dir: &Path, store_url: &str, port: u16) -> String {
    let key = dir.join("google.pem");
    std::fs::write(&key, sim.google_public_key_pem()).unwrap();
    let toml = format!(
        r#"[store]
url = "{store_url}"
key_file = "{d}/store.key"

{upstream}
[sync]
# A week back, so a notification about a reading days old (beyond every look-back) can be
# served: only its hint reaches it.
start = "7d"
# Every dataset once a day: whatever is read during the test was asked for by a notification.
interval = "1d"
jitter = "0s"

[push]
enabled = true
# The default: a burst of notifications landing within it is one read.
delay = "2s"
google_authorization = "{SECRET}"
google_public_key_file = "{key}"

[server]
listen = "127.0.0.1:{port}"
public_url = "http://127.0.0.1:{port}"

{streamr}"#,
        d = dir.display(),
        upstream = common::upstream_toml(sim, dir),
        key = key.display(),
        streamr = common::streamr_http_toml(sim),
    );
    let path = dir.join("wearbridge.toml");
    std::fs::write(&path, toml).unwrap();
    path.to_str().unwrap().to_owned()
}

async fn cli(dir: &Path, config: &str, args: &[&str]) -> String {
    let out = common::command_on_system_clock(dir, config, args).output().await.unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "wearbridge {args:?}: {text}");
    text
}

/// Body-weight messages the node received with this value (kg).
fn weights(sim: &Simulator, kg: f64) -> usize {
    sim.streamr_received()
        .iter()
        .filter(|r| r.message["header"]["schema_id"]["name"] == "body-weight")
        .filter(|r| r.message["body"]["body_weight"]["value"].as_f64().is_some_and(|v| (v - kg).abs() < 0.01))
        .count()
}

/// Requests the simulator logged since `since`, by label.
fn requests_since(sim: &Simulator, since: Instant) -> Vec<String> {
    sim.request_log().into_iter().filter(|(at, _)| *at >= since).map(|(_, label)| label).collect()
}

/// Waits (at most 60 s) until two seconds pass with no request to the simulator.
async fn wait_quiet(sim: &Simulator) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = sim.request_log().len();
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let now = sim.request_log().len();
        if now == seen {
            return;
        }
        assert!(Instant::now() < deadline, "the simulator was never quiet for two seconds");
        seen = now;
    }
}

/// A read no notification in these tests asks for: a poll.
fn is_poll(label: &str) -> bool {
    [
        "heart-rate",
        "sleep",
        "getactivity",
        "getintradayactivity",
        "pairedDevices",
        "getdevice",
        "dailyRollUp",
        "getsummary",
    ]
    .iter()
    .any(|p| label.contains(p))
}

async fn metric(port: u16, series: &str) -> f64 {
    let text =
        common::http().get(format!("http://127.0.0.1:{port}/metrics")).send().await.unwrap().text().await.unwrap();
    text.lines().filter(|l| l.starts_with(series)).filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum()
}

async fn notified_readings_are_published_within_seconds(store_url: String) {
    let sim = common::simulator_on_system_clock(2, 2020).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let port = common::free_port();
    let config = write_config(&sim, d, &store_url, port);
    let me = &sim.people()[0];
    for (provider, token) in me.accounts() {
        std::fs::write(d.join("rt"), token).unwrap();
        cli(d, &config, &["users", "add", provider.as_str(), "me", "--refresh-token-file", "rt"]).await;
    }
    let log = d.join("daemon.log");
    let mut daemon = common::command_on_system_clock(d, &config, &["run"])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let _log = crate::daemon::LogOnFailure(log.clone());

    // The first sync reads everything and subscribes the Withings account.
    wait_until("the Withings account is subscribed", Duration::from_secs(60), || {
        sim.withings_subscriptions(0).len() == 3
    })
    .await;
    // The callback carries a secret segment (Withings signs nothing).
    let callback = sim.withings_subscriptions(0)[0].1.clone();
    let prefix = format!("http://127.0.0.1:{port}/webhooks/withings/");
    let token = callback.strip_prefix(&prefix).unwrap_or_else(|| panic!("{callback}"));
    assert!(token.len() == 32 && token.bytes().all(|b| b.is_ascii_hexdigit()), "{callback}");
    assert!(sim.withings_subscriptions(0).iter().all(|(_, c)| *c == callback));
    wait_until("the first sync is published", Duration::from_secs(60), || sim.streamr_received().len() > 20).await;
    // Google's subscriber: created through `push setup`, after the simulator verified
    // the daemon's endpoint with and without the secret.
    std::fs::write(d.join("admin"), simulator::GOOGLE_ADMIN_TOKEN).unwrap();
    let setup =
        cli(d, &config, &["push", "setup", "--google-project", "test-project", "--google-admin-token-file", "admin"])
            .await;
    assert!(setup.contains("created projects/test-project/subscribers/wearbridge"), "{setup}");
    assert!(setup.contains("Withings: 1 accounts are subscribed"), "{setup}");
    let again =
        cli(d, &config, &["push", "setup", "--google-project", "test-project", "--google-admin-token-file", "admin"])
            .await;
    assert!(again.contains("already sends notifications") && again.contains("secret set again"), "{again}");
    assert_eq!(sim.withings_subscriptions(0).len(), 3, "subscribing again adds nothing");
    // Let the first sync settle: nothing asked of the simulator for two seconds.
    wait_quiet(&sim).await;

    // A weigh-in on the Withings scale, then the same notification 99 more times.
    let start = Instant::now();
    let at = chrono::Utc::now() - chrono::TimeDelta::minutes(1);
    assert_eq!(sim.add_weight(0, WITHINGS, at, 123.4).await, [200]);
    let repeats = (0..99).map(|_| sim.notify_weight(0, WITHINGS, at));
    let statuses: Vec<u16> = futures::future::join_all(repeats).await.into_iter().flatten().collect();
    assert_eq!(statuses, [200; 99]);
    wait_until("the Withings weight is published", Duration::from_secs(10), || weights(&sim, 123.4) == 1).await;
    let latency = start.elapsed();
    // A weigh-in from before that one, notified after it (out of order): read as well.
    assert_eq!(sim.add_weight(0, WITHINGS, at - chrono::TimeDelta::minutes(10), 123.8).await, [200]);
    wait_until("the earlier Withings weight is published", Duration::from_secs(10), || weights(&sim, 123.8) == 1).await;
    // And on the Google side.
    let google = Instant::now();
    assert_eq!(sim.add_weight(0, FITBIT, at, 123.6).await, [204]);
    wait_until("the Google weight is published", Duration::from_secs(10), || weights(&sim, 123.6) == 1).await;
    // A weigh-in three days old, beyond the body look-back (a day): only the
    // notification's interval makes the read reach it.
    let old = chrono::Utc::now() - chrono::TimeDelta::days(3);
    assert_eq!(sim.add_weight(0, FITBIT, old, 123.2).await, [204]);
    wait_until("the old Google weight is published", Duration::from_secs(10), || weights(&sim, 123.2) == 1).await;
    eprintln!("push: Withings {latency:?}, Google {:?} from notification to publish", google.elapsed());
    // Longer than push.delay: a notification that missed the coalescing would be read by now.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let since = requests_since(&sim, start);
    let reads = |label: &str| since.iter().filter(|l| *l == label).count();
    assert_eq!(reads("withings.getmeas"), 2, "100 notifications, one read; the late one, one more: {since:?}");
    assert_eq!(reads("google.dataPoints.weight"), 2, "{since:?}");
    assert!(!since.iter().any(|l| is_poll(l)), "no poll in between: {since:?}");
    assert_eq!(weights(&sim, 123.4), 1);
    assert!(
        metric(port, "wearbridge_push_notifications_total{provider=\"withings\",result=\"accepted\"}").await >= 100.0
    );
    assert!(metric(port, "wearbridge_push_latency_seconds_count").await >= 2.0);

    // Forgeries change nothing and are counted; an unknown user is ignored.
    let endpoint = format!("http://127.0.0.1:{port}/webhooks/fitbit");
    let body = format!(
        r#"{{"healthUserId":"{}","dataType":"weight","operation":"UPSERT","intervals":[{{"startTime":"{}"}}]}}"#,
        me.health_user_id,
        at.to_rfc3339()
    );
    let forged = Instant::now();
    assert_eq!(sim.post_google_notification(&endpoint, None, &body, true).await, Some(401));
    assert_eq!(sim.post_google_notification(&endpoint, Some("Bearer wrong"), &body, true).await, Some(403));
    assert_eq!(sim.post_google_notification(&endpoint, Some(SECRET), &body, false).await, Some(403));
    let tampered = body.replace("UPSERT", "DELETE");
    let signature = sim.google_sign(body.as_bytes());
    let status = common::http()
        .post(&endpoint)
        .header("authorization", SECRET)
        .header("x-healthapi-signature", signature)
        .body(tampered)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 403, "a signature of another body");
    let unknown = body.replace(&me.health_user_id, "someone-else");
    assert_eq!(sim.post_google_notification(&endpoint, Some(SECRET), &unknown, true).await, Some(204));
    assert_eq!(sim.post_google_notification(&endpoint, Some(SECRET), "{not json", true).await, Some(400));
    // Longer than push.delay: had a forgery been noted, its read would have come by now.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(requests_since(&sim, forged).iter().all(|l| !l.starts_with("google.")), "nothing was read");
    assert_eq!(metric(port, "wearbridge_push_notifications_total{provider=\"fitbit\",result=\"forged\"}").await, 4.0);
    assert_eq!(
        metric(port, "wearbridge_push_notifications_total{provider=\"fitbit\",result=\"unknown_user\"}").await,
        1.0
    );
    // The Withings endpoint answers Withings' probe; a form without a user is refused;
    // without the secret segment (or with another) there is nothing there.
    let probe = common::http().head(&callback).send().await.unwrap().status();
    assert_eq!(probe, 200);
    assert_eq!(sim.post_withings_notification(&callback, &[("appli", "1".into())]).await, Some(400));
    let form = [("userid", me.withings_user_id.to_string()), ("appli", "1".to_owned())];
    let guessed = format!("{prefix}{}", "0".repeat(32));
    let before = requests_since(&sim, forged).len();
    assert_eq!(sim.post_withings_notification(&guessed, &form).await, Some(404));
    assert_eq!(sim.post_withings_notification(prefix.trim_end_matches('/'), &form).await, Some(404));
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(requests_since(&sim, forged).len(), before, "nothing was read");

    // Leaving ends the Withings subscriptions.
    cli(d, &config, &["users", "remove", "me", "--provider", "withings"]).await;
    assert!(sim.withings_subscriptions(0).is_empty(), "{:?}", sim.withings_subscriptions(0));
    crate::postgres::sigterm(&daemon);
    let exit = tokio::time::timeout(Duration::from_secs(40), daemon.wait()).await.unwrap().unwrap();
    assert!(exit.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notified_readings_are_published_within_seconds_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/wb.db", dir.path().display());
    notified_readings_are_published_within_seconds(url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notified_readings_are_published_within_seconds_on_postgresql() {
    notified_readings_are_published_within_seconds(crate::postgres::fresh_database().await).await;
}
