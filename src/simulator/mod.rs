//! The built-in simulator: a loopback HTTP server that plays the upstream services
//! wearbridge talks to, so the whole pipeline runs with no accounts and no network.
//!
//! Each fake lives in its own module (`google` for the Google Health API v4 and Google's
//! OAuth token endpoint). Shapes, status codes and quirks follow the published
//! descriptions in `shared/reference/specs/`; [`Faults`] lets tests inject failures and
//! the per-endpoint counters let tests and benchmarks count upstream calls.

mod consent;
mod faults;
mod google;
mod people;
mod push;
pub mod scale;
mod streamr;
mod streamr_ws;
mod withings;

pub use faults::{Fault, Faults, parse_fault};
pub use people::{CANARY_ID_BASE, CANARY_USER_ID_BASE, Person, generate_people};
pub use push::ADMIN_TOKEN as GOOGLE_ADMIN_TOKEN;
pub use streamr::{API_KEY as STREAMR_API_KEY, Received, partition_of};

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::clock::Clock;

/// The OAuth client the simulator accepts.
pub const CLIENT_ID: &str = "wearbridge-simulator.apps.googleusercontent.com";
/// The matching client secret (a simulator value, not a real secret).
pub const CLIENT_SECRET: &str = "simulator-client-secret";

/// How to start a simulator.
#[derive(Debug, Clone)]
pub struct SimulatorConfig {
    pub listen: SocketAddr,
    pub people: usize,
    pub seed: u64,
    /// Seed every identifying and free-text field with markers (privacy canary tests).
    pub canary: bool,
    /// "Now" for the readings, token lifetimes and sync times the fakes serve: share one
    /// with the pipeline (pinned in tests) and both agree on the time of day.
    pub clock: Clock,
    /// Google Health heart rate: one sample this often while the device is worn. A real
    /// Fitbit reports every few seconds ([`REALISTIC_HEART_RATE`], with 1 s during
    /// exercise bouts and off-wrist gaps, about 17,000 samples a day); the default, ten
    /// minutes, is ~1 % of that and keeps tests and the demo light.
    pub hr_interval: std::time::Duration,
    /// Withings' application-wide limit (requests a minute; past it, status 601). `None`
    /// turns it off, for benchmarks of wearbridge's own cost with lifted limits.
    pub withings_requests_per_minute: Option<u32>,
}

/// Withings' documented application-wide limit.
pub const WITHINGS_REQUESTS_PER_MINUTE: u32 = 120;

/// A real device's heart-rate cadence while worn.
pub const REALISTIC_HEART_RATE: std::time::Duration = std::time::Duration::from_secs(5);

impl Default for SimulatorConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            people: 3,
            seed: 42,
            canary: false,
            clock: Clock::system(),
            hr_interval: std::time::Duration::from_secs(google::series::HEART_RATE_STEP_SECS as u64),
            withings_requests_per_minute: Some(WITHINGS_REQUESTS_PER_MINUTE),
        }
    }
}

/// Heart-rate samples a device has not uploaded yet: (person, from, before).
pub(crate) type HeldBack = (usize, chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>);

/// Shared state of all fakes.
pub(crate) struct SimState {
    pub people: Vec<Person>,
    pub seed: u64,
    pub clock: Clock,
    /// Seconds between heart-rate samples while worn.
    pub hr_step: i64,
    /// Heart-rate samples not uploaded yet: (person, from, before).
    pub held_back: Mutex<Vec<HeldBack>>,
    pub faults: Faults,
    counters: Mutex<BTreeMap<String, u64>>,
    /// Every request (and every injected fault) with its arrival time, in order.
    log: Mutex<Vec<(std::time::Instant, String)>>,
    pub google: google::OAuthState,
    pub withings: withings::OAuthState,
    pub withings_per_minute: Option<u32>,
    pub withings_quota: withings::AppQuota,
    pub streamr: streamr::NodeState,
    pub consent: consent::ConsentState,
    pub push: push::PushState,
}

impl SimState {
    /// Whether person `person`'s heart-rate sample at `at` is still held back.
    pub(crate) fn is_held_back(&self, person: usize, at: chrono::DateTime<chrono::Utc>) -> bool {
        self.held_back
            .lock()
            .is_ok_and(|h| h.iter().any(|(p, from, before)| *p == person && at >= *from && at < *before))
    }

    pub(crate) fn count(&self, endpoint: &str) {
        self.count_n(endpoint, 1);
        self.note(endpoint.to_owned());
    }

    /// Appends to the request log.
    pub(crate) fn note(&self, entry: String) {
        if let Ok(mut log) = self.log.lock() {
            log.push((std::time::Instant::now(), entry));
        }
    }

    /// Adds `n` to a counter (also used for "points served" tallies).
    pub(crate) fn count_n(&self, counter: &str, n: u64) {
        if let Ok(mut c) = self.counters.lock() {
            *c.entry(counter.to_owned()).or_default() += n;
        }
    }
}

/// A running simulator. Dropping it stops the server.
pub struct Simulator {
    base_url: String,
    ws_url: String,
    ws_task: JoinHandle<()>,
    state: Arc<SimState>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Simulator {
    /// Binds `config.listen` and serves until [`Simulator::stop`] or drop.
    pub async fn start(config: SimulatorConfig) -> std::io::Result<Self> {
        let state = Arc::new(SimState {
            people: generate_people(config.seed, config.people)
                .into_iter()
                .map(|p| if config.canary { p.into_canary() } else { p })
                .collect(),
            seed: config.seed,
            clock: config.clock,
            hr_step: i64::try_from(config.hr_interval.as_secs()).unwrap_or(600).clamp(1, 3600),
            held_back: Mutex::new(Vec::new()),
            faults: Faults::default(),
            counters: Mutex::new(BTreeMap::new()),
            log: Mutex::new(Vec::new()),
            google: google::OAuthState::new(HashMap::new()),
            withings: withings::OAuthState::default(),
            withings_per_minute: config.withings_requests_per_minute.filter(|n| *n > 0),
            withings_quota: withings::AppQuota::default(),
            streamr: streamr::NodeState::default(),
            consent: consent::ConsentState::default(),
            push: push::PushState::new().map_err(std::io::Error::other)?,
        });
        state.google.enrol(&state.people);
        state.withings.enrol(&state.people);
        let app = Router::new()
            .nest("/google", google::router())
            .nest(
                "/withings",
                withings::router().layer(axum::middleware::from_fn_with_state(state.clone(), withings::enforce_quota)),
            )
            .nest("/streamr", streamr::router())
            .layer(axum::middleware::from_fn_with_state(state.clone(), faults::apply))
            .with_state(state.clone());
        let listener = TcpListener::bind(config.listen).await?;
        let addr = listener.local_addr()?;
        let ws_listener = TcpListener::bind(SocketAddr::new(config.listen.ip(), 0)).await?;
        let ws_url = format!("ws://{}", ws_listener.local_addr()?);
        let ws_task = tokio::spawn(streamr_ws::serve(ws_listener, state.clone()));
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = stopped.await;
            });
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "simulator server failed");
            }
        });
        Ok(Self { base_url: format!("http://{addr}"), ws_url, ws_task, state, stop: Some(stop), task: Some(task) })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The value for `fitbit.api_base_url`.
    pub fn google_api_base(&self) -> String {
        format!("{}/google", self.base_url)
    }

    /// The value for `fitbit.token_url`.
    pub fn google_token_url(&self) -> String {
        format!("{}/google/oauth2/token", self.base_url)
    }

    /// The value for `fitbit.auth_url` (the simulated consent page).
    pub fn google_auth_url(&self) -> String {
        format!("{}/google/o/oauth2/v2/auth", self.base_url)
    }

    /// The value for `withings.auth_url`.
    pub fn withings_auth_url(&self) -> String {
        format!("{}/withings/oauth2_user/authorize2", self.base_url)
    }

    /// The value for `fitbit.revoke_url`.
    pub fn google_revoke_url(&self) -> String {
        format!("{}/google/revoke", self.base_url)
    }

    /// Which simulated person signs in on the consent pages from now on.
    pub fn approve_as(&self, person: usize) {
        self.state.consent.approve_as.store(person, Ordering::SeqCst);
    }

    /// Makes the consent pages deny access (`error=access_denied`) or approve again.
    pub fn deny_consent(&self, deny: bool) {
        self.state.consent.deny.store(deny, Ordering::SeqCst);
    }

    /// Shortens Withings' 30-second authorisation-code lifetime (for tests).
    pub fn set_withings_code_lifetime(&self, lifetime: Duration) {
        self.state.consent.withings_code_ms.store(lifetime.as_millis() as u64, Ordering::SeqCst);
    }

    /// The value for `withings.api_base_url` (the token endpoint is `/v2/oauth2` below it).
    pub fn withings_api_base(&self) -> String {
        format!("{}/withings", self.base_url)
    }

    /// The value for `streamr.url` with `streamr.transport = "http"`.
    pub fn streamr_http_url(&self) -> String {
        format!("{}/streamr", self.base_url)
    }

    /// The value for `streamr.url` with `streamr.transport = "websocket"` (the node's
    /// websocket plugin listens on its own port).
    pub fn streamr_ws_url(&self) -> &str {
        &self.ws_url
    }

    /// Websocket plugin faults and counters.
    pub fn streamr_ws(&self) -> StreamrWs<'_> {
        StreamrWs(&self.state.streamr.ws)
    }

    /// Every message the simulated Streamr node accepted, in arrival order.
    pub fn streamr_received(&self) -> Vec<Received> {
        self.state.streamr.received.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// Creates a stream on the simulated node with `partitions` partitions (or resizes
    /// it). Publishes to streams the node does not know fail as on a real node: silently
    /// over the websocket plugin, with HTTP 500 over the HTTP plugin.
    pub fn register_stream(&self, stream: &str, partitions: u32) {
        self.state.streamr.register(stream, partitions);
    }

    /// Runs the node's websocket plugin with `payloadMetadata: true` (frames wrapped as
    /// `{"content", "metadata"}` both ways; unwrapped publishes refused).
    pub fn set_payload_metadata(&self, on: bool) {
        self.state.streamr.payload_metadata.store(on, Ordering::SeqCst);
    }

    /// Takes the simulated node down (every publish answers 500) or brings it back.
    pub fn set_streamr_down(&self, down: bool) {
        self.state.streamr.down.store(down, std::sync::atomic::Ordering::SeqCst);
    }

    /// Points `settings` at this simulator: upstream URLs and the client credentials it
    /// accepts.
    pub fn configure(&self, settings: &mut crate::config::Settings) {
        settings.withings.client_id = Some(CLIENT_ID.into());
        settings.withings.client_secret = Some(secrecy::SecretString::from(CLIENT_SECRET));
        settings.withings.api_base_url = self.withings_api_base();
        settings.withings.auth_url = self.withings_auth_url();
        settings.fitbit.revoke_url = self.google_revoke_url();
        settings.streamr.transport = crate::config::Transport::Http;
        settings.streamr.url = self.streamr_http_url();
        settings.streamr.api_key = Some(secrecy::SecretString::from(streamr::API_KEY));
        settings.fitbit.client_id = Some(CLIENT_ID.into());
        settings.fitbit.client_secret = Some(secrecy::SecretString::from(CLIENT_SECRET));
        settings.fitbit.api_base_url = self.google_api_base();
        settings.fitbit.token_url = self.google_token_url();
        settings.fitbit.auth_url = self.google_auth_url();
    }

    /// The `[fitbit]` and `[withings]` sections of a configuration that points at this
    /// simulator (its endpoints and its client credentials).
    pub fn providers_toml(&self) -> String {
        format!(
            r#"[fitbit]
client_id = "{id}"
client_secret = "{secret}"
api_base_url = "{google}"
token_url = "{token}"
auth_url = "{google_auth}"
revoke_url = "{revoke}"

[withings]
client_id = "{id}"
client_secret = "{secret}"
api_base_url = "{withings}"
auth_url = "{withings_auth}"
"#,
            id = CLIENT_ID,
            secret = CLIENT_SECRET,
            google = self.google_api_base(),
            token = self.google_token_url(),
            google_auth = self.google_auth_url(),
            revoke = self.google_revoke_url(),
            withings = self.withings_api_base(),
            withings_auth = self.withings_auth_url(),
        )
    }

    /// A configuration file for `wearbridge run` against this simulator: its endpoints,
    /// credentials and node, the store and keys in `dir`, publishing to `stream` over the
    /// node's websocket plugin.
    pub fn config_toml(&self, dir: &std::path::Path, stream: &str) -> String {
        format!(
            r#"# Written by `wearbridge simulate --write-config`: everything points at the simulator.
[store]
url = "sqlite://{d}/wearbridge.db"
key_file = "{d}/wearbridge-store.key"

{providers}
[anonymizer]
key_file = "{d}/wearbridge-anonymizer.key"

[streamr]
transport = "websocket"
url = "{ws}"
api_key = "{api_key}"

[streamr.streams]
default = "{stream}"
"#,
            d = dir.display(),
            providers = self.providers_toml(),
            ws = self.streamr_ws_url(),
            api_key = streamr::API_KEY,
        )
    }

    /// The instants of the Google Health readings of `data_type` (`heart-rate`, `sleep` by
    /// end, `weight`, `body-fat`) that person `person` has in `[from, before)` by the
    /// simulator's clock: the simulated world's ground truth, so tests can check that a
    /// sync read exactly what was there, no more and no less.
    pub fn google_readings(
        &self,
        person: usize,
        data_type: &str,
        from: chrono::DateTime<chrono::Utc>,
        before: chrono::DateTime<chrono::Utc>,
    ) -> Vec<chrono::DateTime<chrono::Utc>> {
        use google::series;
        let Some(p) = self.state.people.get(person) else { return Vec::new() };
        let (seed, now) = (self.state.seed, self.state.clock.now());
        let readings: Vec<series::Reading> = match data_type {
            "heart-rate" => series::heart_rate(seed, p, self.state.hr_step, from, before, now),
            "sleep" => series::sleep(seed, p, from, before, now),
            "weight" => series::weight(seed, p, from, before, now),
            "body-fat" => series::body_fat(seed, p, from, before, now),
            _ => Vec::new(),
        };
        readings.iter().map(series::Reading::key).collect()
    }

    /// The civil days in `[first, end)` on which person `person` has Fitbit activity (the
    /// tracker was worn), by the simulated world's ground truth.
    pub fn google_activity_days(
        &self,
        person: usize,
        first: chrono::NaiveDate,
        end: chrono::NaiveDate,
    ) -> Vec<chrono::NaiveDate> {
        let Some(p) = self.state.people.get(person) else { return Vec::new() };
        first
            .iter_days()
            .take_while(|d| *d < end)
            .filter(|d| google::series::activity(self.state.seed, p, *d).is_some())
            .collect()
    }

    /// The simulator's clock (shared: setting it moves the simulated now).
    pub fn clock(&self) -> &Clock {
        &self.state.clock
    }

    pub fn people(&self) -> &[Person] {
        &self.state.people
    }

    /// Queue of injected failures.
    pub fn faults(&self) -> &Faults {
        &self.state.faults
    }

    /// Requests served so far by endpoint label (e.g. `google.token`,
    /// `google.dataPoints.heart-rate`), plus `points.heart-rate`: data points served.
    pub fn requests(&self) -> BTreeMap<String, u64> {
        self.state.counters.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// Every request label (and `fault:<label>` for each injected fault) with its arrival
    /// time, in order: lets tests check ordering and pauses.
    pub fn request_log(&self) -> Vec<(std::time::Instant, String)> {
        self.state.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Requests served so far by one endpoint.
    pub fn request_count(&self, endpoint: &str) -> u64 {
        self.requests().get(endpoint).copied().unwrap_or(0)
    }

    /// Revokes a person's Google grant: their refresh token now gets `invalid_grant`.
    pub fn revoke(&self, person: usize) {
        self.state.google.revoke(person);
    }

    /// Revokes a person's Withings grant: refreshes answer status 503 "invalid refresh_token".
    pub fn revoke_withings(&self, person: usize) {
        self.state.withings.revoke(person);
    }

    /// Withholds a Google Health scope from a person (suffix after `googlehealth.`, e.g.
    /// `sleep.readonly`): data calls that need it answer 403 ACCESS_TOKEN_SCOPE_INSUFFICIENT.
    pub fn deny_scope(&self, person: usize, scope: &str) {
        self.state.google.deny_scope(person, scope);
    }

    /// The public key (PEM) Google's notifications are signed with here: the value for
    /// `push.google_public_key_file`.
    pub fn google_public_key_pem(&self) -> String {
        self.state.push.public_key_pem()
    }

    /// Signs `body` as the simulated Google Health API does (base64 DER).
    pub fn google_sign(&self, body: &[u8]) -> String {
        self.state.push.sign(body)
    }

    /// Person `person` weighed `kg` at `at` on their `provider` scale (`fitbit`: Google
    /// Health, `withings`): the reading is served from now on, and the provider notifies
    /// every subscribed callback (Withings: appli 1 with `startdate`/`enddate`; Google:
    /// `weight` UPSERT, signed). Returns the statuses the callbacks answered.
    pub async fn add_weight(
        &self,
        person: usize,
        provider: anonymizer::Provider,
        at: chrono::DateTime<chrono::Utc>,
        kg: f64,
    ) -> Vec<u16> {
        let withings = provider == crate::sources::withings::PROVIDER;
        let added_at = self.state.clock.now();
        self.state.push.add(push::Added { person, withings, at, grams: kg * 1000.0, added_at });
        self.notify_weight(person, provider, at).await
    }

    /// Sends the notification [`Simulator::add_weight`] sends, again (providers repeat
    /// themselves, and notifications arrive out of order).
    pub async fn notify_weight(
        &self,
        person: usize,
        provider: anonymizer::Provider,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Vec<u16> {
        let Some(p) = self.state.people.get(person) else { return Vec::new() };
        if provider == crate::sources::withings::PROVIDER {
            let mut statuses = Vec::new();
            for callback in self.state.push.withings_callbacks(person, 1) {
                let form = [
                    ("userid", p.withings_user_id.to_string()),
                    ("appli", "1".to_owned()),
                    ("startdate", at.timestamp().to_string()),
                    ("enddate", (at.timestamp() + 1).to_string()),
                ];
                statuses.extend(self.state.push.post_withings(&callback, &form).await);
            }
            statuses
        } else {
            let to = at + chrono::TimeDelta::seconds(1);
            self.state.push.notify_google(&p.health_user_id, "weight", "UPSERT", at, to).await
        }
    }

    /// Person `person`'s device synced `data_type` for `[from, to)`: the simulated Google
    /// Health API notifies its subscribers (signed). The statuses they answered.
    pub async fn notify_google(
        &self,
        person: usize,
        data_type: &str,
        from: chrono::DateTime<chrono::Utc>,
        to: chrono::DateTime<chrono::Utc>,
    ) -> Vec<u16> {
        let Some(p) = self.state.people.get(person) else { return Vec::new() };
        self.state.push.notify_google(&p.health_user_id, data_type, "UPSERT", from, to).await
    }

    /// Posts a Google notification `body` to `endpoint` as given (a test's forgeries and
    /// unknown users): with `authorization`, and signed by the simulator's key when
    /// `signed`. The status the endpoint answered.
    pub async fn post_google_notification(
        &self,
        endpoint: &str,
        authorization: Option<&str>,
        body: &str,
        signed: bool,
    ) -> Option<u16> {
        let signature = signed.then(|| self.state.push.sign(body.as_bytes()));
        self.state.push.post_google(endpoint, authorization, body.as_bytes(), signature).await
    }

    /// Posts a Withings notification form to `callback` as given.
    pub async fn post_withings_notification(&self, callback: &str, form: &[(&str, String)]) -> Option<u16> {
        self.state.push.post_withings(callback, form).await
    }

    /// Person `person`'s Withings notification subscriptions: (appli, callback).
    pub fn withings_subscriptions(&self, person: usize) -> Vec<(u32, String)> {
        self.state.push.withings_subscriptions(person)
    }

    /// The device of person `person` has not uploaded its heart rate in `[from, before)`
    /// yet: the API leaves those samples out until [`Simulator::upload_held_back`].
    pub fn hold_back_heart_rate(
        &self,
        person: usize,
        from: chrono::DateTime<chrono::Utc>,
        before: chrono::DateTime<chrono::Utc>,
    ) {
        if let Ok(mut held) = self.state.held_back.lock() {
            held.push((person, from, before));
        }
    }

    /// The held-back samples arrive (a late upload).
    pub fn upload_held_back(&self) {
        if let Ok(mut held) = self.state.held_back.lock() {
            held.clear();
        }
    }

    /// Ground truth: person `person`'s heart-rate samples in `[from, before)` as the API
    /// serves them now (oldest first), with their values.
    pub fn google_heart_rate(
        &self,
        person: usize,
        from: chrono::DateTime<chrono::Utc>,
        before: chrono::DateTime<chrono::Utc>,
    ) -> Vec<(chrono::DateTime<chrono::Utc>, u32)> {
        let Some(p) = self.state.people.get(person) else { return Vec::new() };
        let mut out: Vec<_> =
            google::series::heart_rate(self.state.seed, p, self.state.hr_step, from, before, self.state.clock.now())
                .into_iter()
                .filter(|r| !self.state.is_held_back(person, r.key()))
                .filter_map(|r| match r {
                    google::series::Reading::HeartRate { at, bpm } => Some((at, bpm)),
                    _ => None,
                })
                .collect();
        out.reverse();
        out
    }

    /// Makes the token endpoint issue a new refresh token with every refresh.
    pub fn set_google_rotation(&self, rotate: bool) {
        self.state.google.set_rotation(rotate);
    }

    /// Stops the server and waits for it.
    pub async fn stop(mut self) {
        self.ws_task.abort();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

/// The simulated node's websocket plugin: faults to inject and connection counters.
pub struct StreamrWs<'a>(&'a streamr_ws::WsState);

impl StreamrWs<'_> {
    /// The next `n` published frames vanish without a word (a publish the node fails).
    pub fn lose_next(&self, n: u64) {
        self.0.silent_drops.store(n, Ordering::SeqCst);
    }

    /// Close every publish socket when its `n`-th frame arrives, losing that frame (0: never).
    pub fn drop_socket_every(&self, n: u64) {
        self.0.drop_socket_every.store(n, Ordering::SeqCst);
    }

    /// Hold each published frame this long before handling it.
    pub fn stall(&self, each: Duration) {
        self.0.stall_ms.store(each.as_millis() as u64, Ordering::SeqCst);
    }

    /// Keep-alive of sockets opened from now on: ping every `ping_every`, drop a socket
    /// that sent nothing (not even a pong) for `drop_after`.
    pub fn keepalive(&self, ping_every: Duration, drop_after: Duration) {
        self.0.ping_every_ms.store(ping_every.as_millis() as u64, Ordering::SeqCst);
        self.0.drop_after_ms.store(drop_after.as_millis() as u64, Ordering::SeqCst);
    }

    /// Publish sockets accepted so far.
    pub fn publish_connections(&self) -> u64 {
        self.0.publish_connections.load(Ordering::SeqCst)
    }

    /// Subscribe sockets accepted so far.
    pub fn subscribe_connections(&self) -> u64 {
        self.0.subscribe_connections.load(Ordering::SeqCst)
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        self.ws_task.abort();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
