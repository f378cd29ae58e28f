#!/usr/bin/env bash
# The whole test suite: formatting, lints, and every unit and integration test
# (SQLite-backed, simulator-backed). Installs nothing today: the tests need only the Rust
# toolchain; when the PostgreSQL backend lands, this script provisions a server too.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
