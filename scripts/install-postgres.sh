#!/usr/bin/env bash
# Installs PostgreSQL (Debian's `postgresql` package, 15 on bookworm) when
# it is missing, and prints the directory of its server binaries (initdb,
# postgres, pg_ctl). Idempotent and safe to run from parallel test
# processes. The tests start their own throwaway clusters from these
# binaries; nothing is started here.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
mkdir -p "$root/target"
exec 9>"$root/target/.postgres-install.lock"
flock 9

find_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }

bin="$(find_bin)"
if [[ -z "$bin" || ! -x "$bin/initdb" ]]; then
  if [[ $(id -u) -ne 0 ]]; then
    sudo=sudo
    command -v sudo >/dev/null || { echo "PostgreSQL is not installed and this user cannot install it (not root, no sudo): apt-get install postgresql" >&2; exit 1; }
  else
    sudo=
  fi
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq >&2
  $sudo apt-get install -y -qq postgresql >&2
  bin="$(find_bin)"
fi
[[ -x "$bin/initdb" && -x "$bin/postgres" ]] || { echo "PostgreSQL server binaries not found after installing" >&2; exit 1; }
id postgres >/dev/null 2>&1 || { echo "the postgres system user is missing" >&2; exit 1; }
echo "$bin"
