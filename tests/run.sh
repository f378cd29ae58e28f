#!/usr/bin/env bash
# The whole test suite: formatting, lints, and every unit and integration test
# (SQLite-, PostgreSQL- and simulator-backed).
#
# PostgreSQL: with DATABASE_URL set, the tests use that server (they create and drop
# their own databases in it). Otherwise this script installs PostgreSQL when absent
# (Debian's package, via apt) and runs a temporary cluster on 127.0.0.1 for the length
# of the run. The PostgreSQL tests fail rather than skip when no server is reachable.
#
# Chromium: the consent-page test drives a real headless browser; Debian's `chromium`
# package is installed when no Chromium is on PATH (that test fails rather than skips).
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# Each fuzz target (src/fuzz.rs) mutates parser input for this long; a plain
# `cargo test` gives each 3 s. WEARBRIDGE_FUZZ_SEED=N replays a run.
export WEARBRIDGE_FUZZ_SECONDS="${WEARBRIDGE_FUZZ_SECONDS:-30}"

apt_install() {
    local sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    echo "tests/run.sh: installing $* (apt)" >&2
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "$@" >/dev/null \
        || { $sudo apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "$@" >/dev/null; }
}

start_postgres() {
    local pgbin
    pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1 || true)
    if [ -z "$pgbin" ]; then
        apt_install postgresql
        pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)
    fi
    PGDIR=$(mktemp -d)
    local port
    local run_as=()
    if [ "$(id -u)" = 0 ]; then
        chown postgres:postgres "$PGDIR"
        run_as=(runuser -u postgres --)
    fi
    "${run_as[@]}" "$pgbin/initdb" -D "$PGDIR/data" -A trust -U postgres --no-sync -E UTF8 >/dev/null
    STOP_PG=("${run_as[@]}" "$pgbin/pg_ctl" -D "$PGDIR/data" -m fast stop)
    trap 'stop_postgres' EXIT
    # A port below the band the tests pick theirs from (tests/it/common.rs, free_port,
    # below the ephemeral range); another one if it is taken. A start that timed out is
    # stopped first, or its lock file would refuse every later attempt.
    for attempt in 1 2 3 4 5; do
        port=$((12000 + RANDOM % 10000))
        if "${run_as[@]}" "$pgbin/pg_ctl" -D "$PGDIR/data" -l "$PGDIR/server.log" -w -t 60 \
            -o "-c listen_addresses=127.0.0.1 -p $port -k $PGDIR -c fsync=off -c max_connections=200" start >/dev/null; then
            break
        fi
        if [ "$attempt" = 5 ]; then
            cat "$PGDIR/server.log" >&2 || true
            echo "tests/run.sh: PostgreSQL did not start" >&2
            exit 1
        fi
        "${STOP_PG[@]}" >/dev/null 2>&1 || true
    done
    export DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres"
    echo "tests/run.sh: temporary PostgreSQL at 127.0.0.1:$port" >&2
}

stop_postgres() {
    "${STOP_PG[@]}" >/dev/null 2>&1 || true
    rm -rf "$PGDIR"
}

if [ -z "${DATABASE_URL:-}" ]; then
    start_postgres
fi
if ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null && ! command -v google-chrome >/dev/null; then
    apt_install chromium
fi

# Every step runs even when an earlier one fails, and every test binary runs even when
# another fails (--no-fail-fast); the last line sums up all of them.
failed_steps=()
cargo fmt --all -- --check || failed_steps+=("cargo fmt")
cargo clippy --workspace --all-targets --locked -- -D warnings || failed_steps+=("cargo clippy")
# The production build (container image, systemd): without the simulator.
cargo clippy --no-default-features --all-targets --locked -- -D warnings || failed_steps+=("cargo clippy --no-default-features")
TEST_LOG=$(mktemp)
cargo test --workspace --locked --no-fail-fast 2>&1 | tee "$TEST_LOG" || failed_steps+=("cargo test")
summary=$(awk '/^test result:/ {
        for (i = 1; i <= NF; i++) {
            if ($(i+1) ~ /^passed/) passed += $i
            if ($(i+1) ~ /^failed/) failed += $i
            if ($(i+1) ~ /^ignored/) ignored += $i
        }
        binaries++
    }
    END { printf "%d passed, %d failed, %d ignored in %d test binaries", passed, failed, ignored, binaries }' "$TEST_LOG")
rm -f "$TEST_LOG"
if [ ${#failed_steps[@]} -eq 0 ]; then
    echo "tests/run.sh: PASSED: $summary"
else
    echo "tests/run.sh: FAILED ($(IFS=,; echo "${failed_steps[*]}")): $summary"
    exit 1
fi
