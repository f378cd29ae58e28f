//! wearbridge: wearable health data → pseudonymised, schema-checked Streamr messages.
//!
//! The modules follow the data flow: [`sources`] → [`normalize`] → `anonymizer` crate →
//! [`schemas`] → [`store`] (outbox) → [`sinks`]; [`pipeline`] runs one pass of it,
//! [`auth`] keeps tokens fresh, `simulator` (with the `demo` feature) stands in for every
//! upstream.

pub mod app;
pub mod auth;
pub mod clock;
pub mod commands;
pub mod config;
#[cfg(feature = "demo")]
pub mod demo;
#[cfg(test)]
mod fuzz;
pub mod http;
pub mod keyfile;
pub mod normalize;
pub mod onboarding;
pub mod pipeline;
pub mod progress;
pub mod publisher;
pub mod retry;
pub mod schedule;
pub mod schemas;
pub mod server;
#[cfg(feature = "demo")]
pub mod simulator;
pub mod sinks;
pub mod sources;
pub mod store;
pub mod telemetry;
pub mod worker;
