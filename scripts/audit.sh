#!/usr/bin/env bash
# Dependency audit with cargo-deny (config: deny.toml).
# - licences, bans (wildcards) and sources: offline, always enforced;
# - known advisories: enforced whenever the RustSec advisory database can be
#   fetched; the build machines reach only crates.io, PyPI, Debian and npm,
#   none of which carries it, so there the script says plainly that
#   advisories were NOT checked instead of pretending.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
tools="${FUSIONHOOK_TOOLS_DIR:-$root/target/tools}"
deny="$tools/cargo/bin/cargo-deny"
if [[ ! -x "$deny" ]]; then
  echo "installing cargo-deny 0.20.2 (crates.io) into $tools/cargo"
  cargo install --quiet --locked cargo-deny --version 0.20.2 --root "$tools/cargo"
fi
"$deny" --version
# cargo-deny reads the whole dependency graph, every target platform's
# crates included; a build fetches only this platform's. Fetch them all
# (crates.io is reachable) so the offline checks below have what they read.
cargo fetch --locked
"$deny" --offline check licenses bans sources
if timeout 120 "$deny" fetch db >/dev/null 2>&1; then
  "$deny" check advisories
else
  echo "advisories: NOT CHECKED - the RustSec advisory database (github.com/rustsec/advisory-db) is unreachable from here"
fi
