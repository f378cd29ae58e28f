//! Every integration test, in one binary so the library is linked once (`cargo test
//! --test it`). One module per concern; `common` holds the shared harness.
//!
//! Tests pin the clock (`wearbridge::clock::Clock::pinned`) wherever a count depends on
//! the time of day, so the suite passes at any hour.

mod common;

mod budget;
mod capture;
mod cli;
mod daemon;
mod deploy_config;
mod deploy_manifests;
mod fitbit;
mod hostile;
mod onboarding;
mod people;
mod pipeline;
mod postgres;
mod privacy;
mod push;
mod real_node;
mod series;
mod simulator_contract;
mod store_contract;
mod streamr;
mod time_travel;
mod withings;
mod withings_contract;
