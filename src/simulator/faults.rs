//! Fault injection: tests queue failures per endpoint; the next matching requests get them.

use std::sync::Mutex;
use std::time::Duration;

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

use super::SimState;
use super::google;

/// One injected failure.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// An error status with the provider's error body (e.g. 500, 503).
    Status(u16),
    /// 429 `RESOURCE_EXHAUSTED`, with or without `Retry-After` seconds.
    RateLimited { retry_after: Option<u64> },
    /// OAuth `invalid_grant` from the token endpoint.
    InvalidGrant,
    /// HTTP 200 with a body that is not JSON.
    Malformed,
    /// HTTP 200 with the real body cut in half.
    Truncated,
    /// The real answer, after a delay.
    Delay(Duration),
    /// Withings: HTTP 200 with this envelope status (e.g. 601 with `wait_seconds`, 522,
    /// 503, 401).
    Envelope { status: i64, wait_seconds: Option<u64> },
    /// The real answer with the first occurrence of `from` replaced by `to` (hostile
    /// values inside an otherwise good page: `"beatsPerMinute":"` →
    /// `"beatsPerMinute":"NaN","x":"`).
    Rewrite { from: String, to: String },
    /// HTTP 200 with a JSON body of this many bytes, streamed without `Content-Length`
    /// (an upstream that never stops talking).
    Huge(u64),
    /// An error whose free text is hostile (a name, an e-mail, markup): Google's error
    /// `message` with this HTTP status, or Withings' envelope `error` with this status.
    ErrorText { status: u16, text: String },
}

/// One queued fault: which endpoint (and optionally whose requests) it hits, how often.
#[derive(Debug)]
struct Entry {
    endpoint: String,
    person: Option<usize>,
    fault: Fault,
    remaining: u32,
}

/// Pending faults, first matching entry first.
#[derive(Debug, Default)]
pub struct Faults {
    queue: Mutex<Vec<Entry>>,
}

impl Faults {
    /// The next `times` requests to `endpoint` (a label such as `google.token` or
    /// `google.dataPoints.heart-rate`) get `fault`.
    pub fn inject(&self, endpoint: &str, fault: Fault, times: u32) {
        self.push(Entry { endpoint: endpoint.to_owned(), person: None, fault, remaining: times });
    }

    /// Like [`inject`](Self::inject), but only for requests made with one simulated
    /// person's access token.
    pub fn inject_for_person(&self, endpoint: &str, person: usize, fault: Fault, times: u32) {
        self.push(Entry { endpoint: endpoint.to_owned(), person: Some(person), fault, remaining: times });
    }

    fn push(&self, entry: Entry) {
        if let Ok(mut q) = self.queue.lock() {
            q.push(entry);
        }
    }

    /// Drops every pending fault.
    pub fn clear(&self) {
        if let Ok(mut q) = self.queue.lock() {
            q.clear();
        }
    }

    fn take(&self, endpoint: &str, person: Option<usize>) -> Option<Fault> {
        let mut q = self.queue.lock().ok()?;
        let i = q.iter().position(|e| e.endpoint == endpoint && (e.person.is_none() || e.person == person))?;
        let fault = q[i].fault.clone();
        q[i].remaining = q[i].remaining.saturating_sub(1);
        if q[i].remaining == 0 {
            q.remove(i);
        }
        Some(fault)
    }
}

/// Withings actions travel in the form body: read it, keep it for the handler.
async fn withings_action(request: Request) -> (Request, Option<String>) {
    let (parts, body) = request.into_parts();
    let bytes = to_bytes(body, 1 << 20).await.unwrap_or_default();
    let action = url::form_urlencoded::parse(&bytes).find(|(k, _)| k == "action").map(|(_, v)| v.into_owned());
    (Request::from_parts(parts, Body::from(bytes)), action)
}

/// Middleware: count the request, then apply a queued fault if any.
pub(crate) async fn apply(State(state): State<Arc<SimState>>, request: Request, next: Next) -> Response {
    let path = request.uri().path().to_owned();
    let (request, endpoint, is_withings) = if let Some(rest) = path.strip_prefix("/google") {
        let label = google::endpoint_label(rest);
        (request, label, false)
    } else if let Some(rest) = path.strip_prefix("/withings") {
        let (request, action) = withings_action(request).await;
        (request, super::withings::endpoint_label(action.as_deref(), rest), true)
    } else if path.starts_with("/streamr/") {
        (request, "streamr.publish".to_owned(), false)
    } else {
        (request, format!("other{path}"), false)
    };
    state.count(&endpoint);
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    let person = token
        .as_deref()
        .and_then(|t| state.google.person_for_access(t, state.clock.now()).or_else(|| state.withings.peek_access(t)));
    let Some(fault) = state.faults.take(&endpoint, person) else {
        return next.run(request).await;
    };
    state.note(format!("fault:{endpoint}"));
    if is_withings {
        match fault {
            Fault::Envelope { status: 601, wait_seconds } => {
                return super::withings::throttled(wait_seconds);
            }
            Fault::Envelope { status, .. } => return super::withings::status(status, "Simulated failure"),
            Fault::RateLimited { retry_after } => return super::withings::throttled(retry_after),
            Fault::InvalidGrant => return super::withings::status(503, "Invalid Params: invalid refresh_token"),
            Fault::ErrorText { status, text } => return super::withings::status(i64::from(status), &text),
            Fault::Status(code) => {
                let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                return (status, "upstream failure").into_response();
            }
            _ => {}
        }
    }
    match fault {
        Fault::Envelope { .. } => google::error_for_status(StatusCode::INTERNAL_SERVER_ERROR),
        Fault::ErrorText { status, text } => {
            let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            google::error(code, &text, &text)
        }
        Fault::Status(code) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            google::error_for_status(status)
        }
        Fault::RateLimited { retry_after } => {
            let mut response = google::error_for_status(StatusCode::TOO_MANY_REQUESTS);
            if let Some(secs) = retry_after {
                response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
            }
            response
        }
        Fault::InvalidGrant => google::invalid_grant(),
        Fault::Malformed => {
            ([(header::CONTENT_TYPE, "application/json; charset=UTF-8")], "{\"dataPoints\": [{\"heartRate\": <html>")
                .into_response()
        }
        Fault::Rewrite { from, to } => {
            let response = next.run(request).await;
            let (mut parts, body) = response.into_parts();
            let bytes = to_bytes(body, usize::MAX).await.unwrap_or_default();
            let text = String::from_utf8_lossy(&bytes).replacen(&from, &to, 1);
            parts.headers.remove(header::CONTENT_LENGTH);
            Response::from_parts(parts, Body::from(text))
        }
        Fault::Huge(bytes) => {
            const CHUNK: usize = 64 * 1024;
            let head = axum::body::Bytes::from_static(b"{\"dataPoints\":[");
            let pad = axum::body::Bytes::from(vec![b' '; CHUNK]);
            let chunks = (bytes as usize).div_ceil(CHUNK);
            let stream = futures::stream::iter(
                std::iter::once(head).chain(std::iter::repeat_n(pad, chunks)).map(Ok::<_, std::io::Error>),
            );
            ([(header::CONTENT_TYPE, "application/json")], Body::from_stream(stream)).into_response()
        }
        Fault::Truncated => {
            let response = next.run(request).await;
            let (mut parts, body) = response.into_parts();
            let bytes = to_bytes(body, usize::MAX).await.unwrap_or_default();
            let cut = bytes.slice(..bytes.len() / 2);
            parts.headers.remove(header::CONTENT_LENGTH);
            Response::from_parts(parts, Body::from(cut))
        }
        Fault::Delay(d) => {
            tokio::time::sleep(d).await;
            next.run(request).await
        }
    }
}

/// One `simulate --fault` flag: `ENDPOINT=FAULT[*TIMES]`, so the hostile cases can be
/// reproduced by hand. `FAULT` is one of `status:CODE`, `rate-limit[:SECS]`,
/// `invalid-grant`, `malformed`, `truncated`, `delay:MILLIS`, `envelope:STATUS[:WAIT]`,
/// `huge:BYTES`, `error-text:CODE:TEXT` or `rewrite:FROM=>TO`; without `*TIMES` it
/// applies to every request. Endpoints are the simulator's labels
/// (`google.dataPoints.heart-rate`, `google.token`, `withings.getmeas`,
/// `withings.requesttoken`, `streamr.publish`, ...).
pub fn parse_fault(text: &str) -> Result<(String, Fault, u32), String> {
    let (endpoint, rest) = text.split_once('=').ok_or("expected ENDPOINT=FAULT[*TIMES]")?;
    if endpoint.is_empty() {
        return Err("expected ENDPOINT=FAULT[*TIMES]".into());
    }
    let (spec, times) = match rest.rsplit_once('*') {
        Some((spec, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
            (spec, n.parse::<u32>().map_err(|_| format!("times out of range: {n}"))?)
        }
        _ => (rest, u32::MAX),
    };
    let (kind, arg) = spec.split_once(':').unwrap_or((spec, ""));
    let number = |s: &str, what: &str| s.parse::<u64>().map_err(|_| format!("{kind}: expected {what}, got {s:?}"));
    let fault = match kind {
        "status" => Fault::Status(u16::try_from(number(arg, "an HTTP status")?).map_err(|_| "status out of range")?),
        "rate-limit" => {
            Fault::RateLimited { retry_after: (!arg.is_empty()).then(|| number(arg, "seconds")).transpose()? }
        }
        "invalid-grant" => Fault::InvalidGrant,
        "malformed" => Fault::Malformed,
        "truncated" => Fault::Truncated,
        "delay" => Fault::Delay(Duration::from_millis(number(arg, "milliseconds")?)),
        "envelope" => {
            let (status, wait) = arg.split_once(':').map_or((arg, None), |(s, w)| (s, Some(w)));
            let status = status.parse::<i64>().map_err(|_| format!("envelope: expected a status, got {status:?}"))?;
            Fault::Envelope { status, wait_seconds: wait.map(|w| number(w, "seconds")).transpose()? }
        }
        "huge" => Fault::Huge(number(arg, "a size in bytes")?),
        "error-text" => {
            let (code, text) = arg.split_once(':').ok_or("error-text: expected CODE:TEXT")?;
            Fault::ErrorText {
                status: u16::try_from(number(code, "a status")?).map_err(|_| "status out of range")?,
                text: text.to_owned(),
            }
        }
        "rewrite" => {
            let (from, to) = arg.split_once("=>").ok_or("rewrite: expected FROM=>TO")?;
            Fault::Rewrite { from: from.to_owned(), to: to.to_owned() }
        }
        other => return Err(format!("unknown fault {other:?}")),
    };
    Ok((endpoint.to_owned(), fault, times))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_flags_parse() {
        assert_eq!(
            parse_fault("google.dataPoints.heart-rate=status:500*3").unwrap(),
            ("google.dataPoints.heart-rate".into(), Fault::Status(500), 3)
        );
        assert_eq!(
            parse_fault("withings.requesttoken=envelope:601:1000000000").unwrap().1,
            Fault::Envelope { status: 601, wait_seconds: Some(1_000_000_000) }
        );
        assert_eq!(
            parse_fault(r#"google.dataPoints.heart-rate=rewrite:"beatsPerMinute":"=>"beatsPerMinute":"NaN","x":"*1"#)
                .unwrap(),
            (
                "google.dataPoints.heart-rate".into(),
                Fault::Rewrite { from: r#""beatsPerMinute":""#.into(), to: r#""beatsPerMinute":"NaN","x":""#.into() },
                1
            )
        );
        assert_eq!(parse_fault("streamr.publish=rate-limit").unwrap().1, Fault::RateLimited { retry_after: None });
        assert_eq!(parse_fault("x=huge:1048576").unwrap().2, u32::MAX);
        for bad in ["", "=status:500", "x", "x=status:abc", "x=nonsense", "x=rewrite:no-arrow", "x=status:70000"] {
            assert!(parse_fault(bad).is_err(), "{bad:?}");
        }
    }
}
