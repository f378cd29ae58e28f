//! `wearbridge describe [--format markdown|json]`: what a seller needs to list the data
//! on the Streamr Hub, generated from the configuration and the published schemas, so
//! the listing cannot drift from what is actually published: per stream, its message
//! types with their fields (the stream's `config.fields` shape), update cadence,
//! partitions and schema ids, and the privacy statement the policy implies.

use serde_json::{Value, json};

use super::Globals;
use crate::config::{Dataset, Settings, When};
use crate::schemas::Schemas;

/// The output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Markdown,
    Json,
}

/// The dataset a message type is read with (for its cadence).
fn dataset_of(message_type: &str) -> Dataset {
    match message_type {
        "heart-rate" | "heart-rate-series" | "resting-heart-rate" => Dataset::HeartRate,
        "daily-activity" => Dataset::Activity,
        "sleep-episode" => Dataset::Sleep,
        "device-status" => Dataset::Devices,
        _ => Dataset::Body,
    }
}

/// A JSON Schema type as a Streamr field type (`number`, `string`, `boolean`, `list`,
/// `map`).
fn field_type(schema: &Value) -> &'static str {
    let t = schema.get("type").and_then(|t| t.as_str().map(str::to_owned).or_else(|| t[0].as_str().map(str::to_owned)));
    match t.as_deref() {
        Some("number" | "integer") => "number",
        Some("boolean") => "boolean",
        Some("array") => "list",
        Some("object") => "map",
        Some("string") => "string",
        _ if schema.get("const").is_some_and(Value::is_string) => "string",
        _ => "map",
    }
}

fn fields(properties: Option<&Value>) -> Vec<Value> {
    properties
        .and_then(Value::as_object)
        .map(|p| p.iter().map(|(name, s)| json!({"name": name, "type": field_type(s)})).collect())
        .unwrap_or_default()
}

fn cadence(settings: &Settings, message_type: &str) -> String {
    let dataset = dataset_of(message_type);
    let read = match settings.sync.plan(dataset).when {
        When::Every(every) => format!("read every {}", humantime(every)),
        When::DailyAt(at) => format!("read daily at {} in the person's time zone", at.format("%H:%M")),
    };
    let what = match message_type {
        "heart-rate-series" => {
            let window = settings.anonymizer.series.get("heart-rate").map_or(3600, |s| s.window.as_secs());
            format!("one message per person and closed {} window; ", humantime(std::time::Duration::from_secs(window)))
        }
        "daily-activity" | "resting-heart-rate" => "one message per person and day, once the day is over; ".into(),
        "device-status" => "one snapshot per person and device at each read; ".into(),
        _ => "one message per reading; ".into(),
    };
    format!("{what}{read}")
}

fn humantime(d: std::time::Duration) -> String {
    let s = d.as_secs();
    match s {
        s if s % 86_400 == 0 => format!("{} d", s / 86_400),
        s if s % 3600 == 0 => format!("{} h", s / 3600),
        s if s % 60 == 0 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

/// The privacy statement the anonymizer settings imply.
fn privacy(settings: &Settings) -> Vec<String> {
    let a = &settings.anonymizer;
    let policy = a.policy();
    let mut lines = vec![
        "Removed: names, e-mail addresses, provider user ids, device names, models, serials and MAC addresses, free text; only allow-listed fields of allow-listed message types leave.".to_owned(),
        format!(
            "Pseudonymised: `subject` is a keyed hash (HMAC-SHA256) under a secret key of epoch `{}`; {}",
            a.epoch,
            if a.link_providers {
                "one subject per person across their providers (so a person's data can be joined)."
            } else {
                "one subject per provider account (a person's accounts are not linked)."
            }
        ),
        format!(
            "Coarsened: times to {} (heart rate), {} (sleep), {} (body measures); masses to {} kg.",
            humantime(policy.granularity("heart-rate").to_std().unwrap_or_default()),
            humantime(policy.granularity("sleep-episode").to_std().unwrap_or_default()),
            humantime(policy.granularity("body-weight").to_std().unwrap_or_default()),
            a.mass_step_kg
        ),
    ];
    if a.date_shift_days > 0 {
        lines.push(format!("Dates shifted by a secret per-subject constant of up to {} days.", a.date_shift_days));
    }
    if let Some(kg) = a.weight_top_code_kg {
        lines.push(format!("Body weights above {kg} kg are published as {kg} kg."));
    }
    lines.push("Consumers must not attempt to re-identify anyone; published messages cannot be recalled.".into());
    lines
}

/// The description as JSON (the Markdown is rendered from it).
pub fn describe(settings: &Settings) -> anyhow::Result<Value> {
    let routes = crate::pipeline::Routes::new(&settings.streamr.streams)?;
    let policy = settings.anonymizer.policy();
    let series = |t: &str| crate::config::series_window(&settings.anonymizer.series, t).is_some();
    let mut streams: std::collections::BTreeMap<String, Vec<Value>> = std::collections::BTreeMap::new();
    for name in Schemas::names().filter(|n| *n != "envelope" && policy.allows(n)) {
        // Heart rate goes out as series or as samples, not both.
        if (name == "heart-rate" && series("heart-rate")) || (name == "heart-rate-series" && !series("heart-rate")) {
            continue;
        }
        let Ok(stream) = routes.stream_for(name) else { continue };
        let schema: Value = serde_json::from_str(Schemas::text(name).unwrap_or("{}"))?;
        let body = &schema["properties"]["body"]["properties"];
        streams.entry(stream.to_owned()).or_default().push(json!({
            "name": name,
            "schema_id": {"namespace": "wearbridge", "name": name, "version": "1.0"},
            "schema": schema["$id"],
            "description": schema["description"],
            "cadence": cadence(settings, name),
            "body_fields": fields(Some(body)),
        }));
    }
    let envelope: Value = serde_json::from_str(Schemas::text("envelope").unwrap_or("{}"))?;
    let streams: Vec<Value> = streams
        .into_iter()
        .map(|(id, types)| {
            let partitions = settings.streamr.stream_partitions.get(&id).copied().unwrap_or(settings.streamr.partitions);
            let names: Vec<&str> = types.iter().filter_map(|t| t["name"].as_str()).collect();
            json!({
                "id": id,
                "description": format!(
                    "Pseudonymised wearable data ({}) from people who consented, published by wearbridge. Each message is JSON valid against its schema (header.schema_id). Messages are partitioned by subject.",
                    names.join(", ")
                ),
                "partitions": partitions,
                "config": {"fields": fields(envelope.get("properties"))},
                "message_types": types,
            })
        })
        .collect();
    Ok(json!({"streams": streams, "privacy": privacy(settings)}))
}

/// `` `name` (type), … `` of a list of fields.
fn field_list(fields: &Value) -> String {
    let each = fields.as_array().into_iter().flatten();
    let named: Vec<String> = each
        .map(|f| format!("`{}` ({})", f["name"].as_str().unwrap_or(""), f["type"].as_str().unwrap_or("")))
        .collect();
    named.join(", ")
}

fn markdown(d: &Value) -> String {
    let mut out = String::new();
    for s in d["streams"].as_array().into_iter().flatten() {
        out += &format!(
            "# Stream `{}`\n\n{}\n\nPartitions: {}.\n\n",
            s["id"].as_str().unwrap_or(""),
            s["description"].as_str().unwrap_or(""),
            s["partitions"]
        );
        out += &format!("Fields (Streamr `config.fields`): {}.\n\n", field_list(&s["config"]["fields"]));
        for t in s["message_types"].as_array().into_iter().flatten() {
            out += &format!(
                "## `{}`\n\n{}\n\n",
                t["name"].as_str().unwrap_or(""),
                t["description"].as_str().unwrap_or("")
            );
            out += &format!(
                "- Cadence: {}.\n- Schema: {}\n",
                t["cadence"].as_str().unwrap_or(""),
                t["schema"].as_str().unwrap_or("")
            );
            out += &format!("- Body: {}.\n\n", field_list(&t["body_fields"]));
        }
    }
    out += "# Privacy\n\n";
    for line in d["privacy"].as_array().into_iter().flatten() {
        out += &format!("- {}\n", line.as_str().unwrap_or(""));
    }
    out
}

pub fn main(globals: &Globals, format: Format) -> anyhow::Result<()> {
    let loaded = globals.load()?;
    let description = describe(&loaded.settings)?;
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&description)?),
        Format::Markdown => print!("{}", markdown(&description)),
    }
    Ok(())
}
