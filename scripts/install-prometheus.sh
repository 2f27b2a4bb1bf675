#!/usr/bin/env bash
# Installs Prometheus (Debian's `prometheus` package, which ships promtool)
# when promtool is missing, and prints promtool's path. The chart's alert
# rules are checked and unit-tested with it (tests/tests/alerts.rs).
# Idempotent and safe to run from parallel test processes. Installing the
# package may start a Prometheus service where systemd runs; nothing here
# relies on it.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
mkdir -p "$root/target"
exec 9>"$root/target/.prometheus-install.lock"
flock 9

promtool="$(command -v promtool || true)"
if [[ -z "$promtool" ]]; then
  if [[ $(id -u) -ne 0 ]]; then
    sudo=sudo
    command -v sudo >/dev/null || { echo "promtool is not installed and this user cannot install it (not root, no sudo): apt-get install prometheus" >&2; exit 1; }
  else
    sudo=
  fi
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq >&2
  $sudo apt-get install -y -qq --no-install-recommends prometheus >&2
  promtool="$(command -v promtool || true)"
fi
[[ -n "$promtool" && -x "$promtool" ]] || { echo "promtool not found after installing Debian's prometheus package" >&2; exit 1; }
echo "$promtool"
