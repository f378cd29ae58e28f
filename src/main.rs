//! The `wearbridge` command line: argument parsing and dispatch only.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{ArgGroup, Parser, Subcommand};
use wearbridge::commands::{self, Globals, users::TokenSource};
use wearbridge::config::{ConfigError, parse_duration};
use wearbridge::telemetry::{self, LogFormat};

#[derive(Parser)]
#[command(
    name = "wearbridge",
    version,
    about = "Wearable health data → pseudonymised, schema-checked Streamr messages"
)]
struct Cli {
    /// Configuration file (TOML). Default: ./wearbridge.toml when it exists.
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Override one setting, highest precedence (repeatable), e.g. --set sync.start=2d
    #[arg(long = "set", global = true, value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Run as if the current time were this instant (RFC 3339, e.g. 2028-02-29T12:00:00Z):
    /// the simulator and the pipeline read it, and the clock runs on from it. For
    /// reproducible demos, tests and replays; the system clock when absent.
    #[arg(long, global = true, value_name = "INSTANT", value_parser = wearbridge::clock::parse_instant)]
    now: Option<chrono::DateTime<chrono::Utc>>,
    /// More log detail (-v debug, -vv trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Sync every active account (every sync.interval, or once).
    Run {
        /// One pass, then exit.
        #[arg(long)]
        once: bool,
        /// Print the exact payloads instead of publishing; persist only rotated tokens.
        #[arg(long)]
        dry_run: bool,
    },
    /// The whole pipeline against the built-in simulator: no accounts, no config.
    #[cfg(feature = "demo")]
    Demo {
        /// Simulated people.
        #[arg(long, default_value_t = 3)]
        people: usize,
        /// Seed of the simulated people and readings.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// How much history to read (e.g. 2d, 12h).
        #[arg(long, default_value = "2d", value_parser = parse_duration)]
        history: std::time::Duration,
        /// Heart rate while worn, one sample this often (a real Fitbit: 5s; the demo's
        /// default, 10m, is ~1 % of that and quick).
        #[arg(long, default_value = "10m", value_parser = parse_duration)]
        hr_interval: std::time::Duration,
    },
    /// Serve the simulator (Google Health API and OAuth) in the foreground.
    #[cfg(feature = "demo")]
    Simulate {
        #[arg(long, default_value = "127.0.0.1:8090")]
        listen: std::net::SocketAddr,
        #[arg(long, default_value_t = 3)]
        people: usize,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// A stream the simulated Streamr node knows, `ID` or `ID:PARTITIONS` (repeatable);
        /// publishes to any other stream fail as on a real node.
        #[arg(long = "stream", value_name = "ID[:PARTITIONS]", default_value = "wearbridge-demo.eth/health", value_parser = parse_stream)]
        streams: Vec<(String, u32)>,
        /// A fault to serve (repeatable), `ENDPOINT=FAULT[*TIMES]`, e.g.
        /// `google.dataPoints.heart-rate=status:500*3` or
        /// `withings.requesttoken=envelope:601:1000000000`. FAULT: status:CODE,
        /// rate-limit[:SECS], invalid-grant, malformed, truncated, delay:MILLIS,
        /// envelope:STATUS[:WAIT], huge:BYTES, error-text:CODE:TEXT, rewrite:FROM=>TO.
        #[arg(long = "fault", value_name = "ENDPOINT=FAULT[*TIMES]", value_parser = wearbridge::simulator::parse_fault)]
        faults: Vec<(String, wearbridge::simulator::Fault, u32)>,
        /// Heart rate while worn, one sample this often, as a real Fitbit (5s; below a
        /// minute also 1 s samples in exercise bouts and an evening off-wrist gap).
        #[arg(long, default_value = "5s", value_parser = parse_duration)]
        hr_interval: std::time::Duration,
        /// Withings' application-wide limit, requests a minute (601 past it); 0 turns it
        /// off (to measure wearbridge with lifted limits).
        #[arg(long, default_value_t = wearbridge::simulator::WITHINGS_REQUESTS_PER_MINUTE)]
        withings_quota: u32,
        /// Write a configuration for `wearbridge run` against this simulator to FILE (its
        /// store and keys beside it).
        #[arg(long, value_name = "FILE")]
        write_config: Option<PathBuf>,
        /// Add readings over time: this often, every person's devices sync (a Google
        /// heart-rate notification for the interval, a weigh-in on each provider's scale),
        /// and both providers notify their subscribers (see `push setup`).
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        push_every: Option<std::time::Duration>,
    },
    /// Enrol a person by consent: prints the provider's authorisation URL and waits for
    /// the redirect on oauth.redirect_uri (or reads the pasted address with --manual).
    Connect {
        /// The provider (fitbit, withings).
        #[arg(value_parser = parse_provider)]
        provider: anonymizer::Provider,
        name: String,
        /// Paste the address the browser ends up at instead of listening on the loopback.
        #[arg(long)]
        manual: bool,
        /// How long to wait for the redirect.
        #[arg(long, default_value = "5m", value_parser = parse_duration)]
        timeout: std::time::Duration,
    },
    /// Enrol, list and withdraw accounts.
    Users {
        #[command(subcommand)]
        command: UsersCommand,
    },
    /// Describe the data product for a Streamr Hub listing: per stream, the message types,
    /// fields, cadence and partitions, and the privacy statement (from the configuration
    /// and the schemas).
    Describe {
        #[arg(long, value_enum, default_value = "markdown")]
        format: commands::describe::Format,
    },
    /// List the published JSON Schemas, or print one.
    Schemas { name: Option<String> },
    /// Check the configuration as `run` would (or `--for dry-run|syntax`) and print it
    /// with secrets redacted, or say what is wrong: the key and where it was set.
    CheckConfig {
        #[arg(long = "for", value_enum, default_value = "run")]
        r#for: commands::check_config::Purpose,
    },
    /// Wi-Fi scales that post to the capture listener (capture.listen): enrol them and say
    /// which person each user slot is.
    Scales {
        #[command(subcommand)]
        command: ScalesCommand,
    },
    /// Push notifications: set up what they need once (see the README, "Push
    /// notifications").
    Push {
        #[command(subcommand)]
        command: PushCommand,
    },
    /// Exit 0 when URL answers 2xx within 5 s (container health checks without curl).
    Probe { url: String },
}

/// Any provider an account can have (consented or captured), for withdrawing one.
fn parse_any_provider(name: &str) -> Result<anonymizer::Provider, String> {
    wearbridge::sources::registry::provider(name).ok_or_else(|| {
        format!("unknown provider; expected one of: {}, local", wearbridge::sources::registry::names().join(", "))
    })
}

/// A provider name this build has a source for.
fn parse_provider(name: &str) -> Result<anonymizer::Provider, String> {
    wearbridge::sources::registry::consented(name).ok_or_else(|| {
        format!("unknown provider; expected one of: {}", wearbridge::sources::registry::names().join(", "))
    })
}

#[derive(Subcommand)]
enum UsersCommand {
    /// Enrol a person's account with a provider, with a refresh token read from a file
    /// or stdin (never argv). A person may have one account per provider; all of them
    /// publish under one subject (anonymizer.link_providers).
    #[command(group(ArgGroup::new("token").required(true).args(["refresh_token_file", "refresh_token_stdin"])))]
    Add {
        /// The provider (fitbit, withings).
        #[arg(value_parser = parse_provider)]
        provider: anonymizer::Provider,
        name: String,
        #[arg(long, value_name = "FILE")]
        refresh_token_file: Option<PathBuf>,
        #[arg(long)]
        refresh_token_stdin: bool,
    },
    /// List people, their accounts and their status.
    List,
    /// Withdraw a person (every account, or only `--provider`'s): revoke where the
    /// provider allows, delete tokens, cursors and unpublished messages.
    Remove {
        name: String,
        /// Only this provider's account (fitbit, withings, or local: captured scales).
        #[arg(long, value_parser = parse_any_provider)]
        provider: Option<anonymizer::Provider>,
    },
}

#[derive(Subcommand)]
enum ScalesCommand {
    /// Enrol a scale by its MAC address (printed on it, or its `serialNumber`).
    Add {
        #[arg(value_enum)]
        kind: commands::scales::Kind,
        name: String,
        #[arg(long)]
        mac: String,
    },
    /// Say which person a user slot of the scale is (its user id; 0 is the guest).
    Assign { scale: String, slot: i64, person: String },
    /// List scales and their slots.
    List,
    /// Forget a scale.
    Remove { name: String },
}

#[derive(Subcommand)]
enum PushCommand {
    /// Create the Google Health API subscriber of the project (with --google-project and a
    /// Google Cloud access token of scope cloud-platform), and subscribe every enrolled
    /// Withings account now.
    #[command(group(ArgGroup::new("admin").args(["google_admin_token_file", "google_admin_token_stdin"])))]
    Setup {
        /// The Google Cloud project whose subscriber sends the notifications.
        #[arg(long, requires = "admin")]
        google_project: Option<String>,
        /// A file with the access token (e.g. from `gcloud auth print-access-token`).
        #[arg(long, value_name = "FILE")]
        google_admin_token_file: Option<PathBuf>,
        #[arg(long)]
        google_admin_token_stdin: bool,
    },
}

/// `ID` or `ID:PARTITIONS` (1 to 100).
#[cfg(feature = "demo")]
fn parse_stream(text: &str) -> Result<(String, u32), String> {
    match text.rsplit_once(':') {
        Some((id, n)) if !id.is_empty() => match n.parse::<u32>() {
            Ok(n @ 1..=100) => Ok((id.to_owned(), n)),
            _ => Err(format!("expected 1 to 100 partitions after ':', got {n:?}")),
        },
        _ => Ok((text.to_owned(), 1)),
    }
}

fn main() -> ExitCode {
    wearbridge::http::tls();
    let cli = Cli::parse();
    #[cfg(feature = "demo")]
    let default_level = if matches!(cli.command, Command::Demo { .. }) { "warn" } else { "info" };
    #[cfg(not(feature = "demo"))]
    let default_level = "info";
    telemetry::init(cli.log_format, cli.verbose, default_level);
    let globals = Globals { config: cli.config, set: cli.set, now: cli.now };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Run { once, dry_run } => commands::run::main(&globals, once, dry_run).await,
            Command::Probe { url } => commands::probe::main(&url).await,
            Command::Connect { provider, name, manual, timeout } => {
                commands::connect::main(&globals, provider, &name, manual, timeout).await
            }
            #[cfg(feature = "demo")]
            Command::Demo { people, seed, history, hr_interval } => {
                if globals.config.is_some() || !globals.set.is_empty() {
                    // Said, not ignored: the demo's configuration is built in.
                    return Err(ConfigError::NotForDemo.into());
                }
                let options = wearbridge::demo::DemoOptions {
                    people,
                    seed,
                    history,
                    now: globals.now,
                    hr_interval,
                    progress: true,
                };
                wearbridge::demo::main(&options).await
            }
            #[cfg(feature = "demo")]
            Command::Simulate {
                listen,
                people,
                seed,
                streams,
                faults,
                hr_interval,
                withings_quota,
                write_config,
                push_every,
            } => {
                let config = wearbridge::simulator::SimulatorConfig {
                    listen,
                    people,
                    seed,
                    canary: false,
                    clock: globals.clock(),
                    hr_interval,
                    withings_requests_per_minute: Some(withings_quota).filter(|n| *n > 0),
                };
                commands::simulate::main(config, &streams, &faults, write_config.as_deref(), push_every).await
            }
            Command::Users { command } => match command {
                UsersCommand::Add { provider, name, refresh_token_file, refresh_token_stdin: _ } => {
                    let source = match &refresh_token_file {
                        Some(path) => TokenSource::File(path),
                        None => TokenSource::Stdin,
                    };
                    commands::users::add(&globals, provider, &name, source).await
                }
                UsersCommand::List => commands::users::list(&globals).await,
                UsersCommand::Remove { name, provider } => commands::users::remove(&globals, &name, provider).await,
            },
            Command::Schemas { name } => commands::schemas::main(name.as_deref()),
            Command::Push {
                command: PushCommand::Setup { google_project, google_admin_token_file, google_admin_token_stdin: _ },
            } => {
                let google = google_project.as_deref().map(|project| commands::push::Google {
                    project,
                    admin_token: match &google_admin_token_file {
                        Some(path) => TokenSource::File(path),
                        None => TokenSource::Stdin,
                    },
                });
                commands::push::setup(&globals, google).await
            }
            Command::Scales { command } => match command {
                ScalesCommand::Add { kind, name, mac } => commands::scales::add(&globals, kind, &name, &mac).await,
                ScalesCommand::Assign { scale, slot, person } => {
                    commands::scales::assign(&globals, &scale, slot, &person).await
                }
                ScalesCommand::List => commands::scales::list(&globals).await,
                ScalesCommand::Remove { name } => commands::scales::remove(&globals, &name).await,
            },
            Command::Describe { format } => commands::describe::main(&globals, format),
            Command::CheckConfig { r#for } => commands::check_config::main(&globals, r#for),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            if e.chain().any(|c| c.is::<ConfigError>()) {
                ExitCode::from(2)
            } else if e.chain().any(|c| c.is::<commands::run::Undelivered>()) {
                ExitCode::from(commands::run::UNDELIVERED_EXIT)
            } else if e.chain().any(|c| c.is::<commands::run::FailedAccounts>()) {
                ExitCode::from(commands::run::FAILED_ACCOUNTS_EXIT)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
