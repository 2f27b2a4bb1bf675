#!/usr/bin/env bash
# The embedded-engine comparison, one command: bench/engines.sh [events] [group size]
# (see bench/engines/src/main.rs; default 300000 events in groups of 32)
set -euo pipefail
cd "$(dirname "$0")/engines"
ENGINES_DIR=../../target/engines/data CARGO_TARGET_DIR=../../target/engines cargo run --release --quiet -- "${1:-300000}" "${2:-32}"
