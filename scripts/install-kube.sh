#!/usr/bin/env bash
# Builds the tests' Kubernetes control plane from the published Go modules
# (the Go module proxy is the only source; nothing else is downloaded):
#   kube-apiserver, kube-controller-manager   k8s.io/kubernetes (hack/kube/go.mod)
#   etcd                                      go.etcd.io/etcd/server/v3 (hack/kube/etcd/go.mod)
# into a cache outside the clone, keyed by the go.mod/go.sum pairs, so CI and
# later runs on the machine reuse it; then links them into target/kube/bin,
# where the tests look. Idempotent and safe to run from parallel test
# processes (a lock).
#
# envtest's convention: when KUBEBUILDER_ASSETS names a folder holding etcd
# and kube-apiserver (what setup-envtest gives), those are linked instead and
# only what is missing (kube-controller-manager) is built.
#
# Environment: FUSIONHOOK_KUBE_CACHE (default ~/.cache/fusionhook/kube).
# Prints the bin folder. The first build takes several minutes (see README).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
kube_version="v1.37.2"
etcd_version="v3.7.0"
# The key is what the binaries are built from (the pinned modules, and
# flags_version, bumped by hand when the build flags below change), not this
# script: editing its messages rebuilds nothing.
flags_version=1
key="$( (cat "$root/hack/kube/go.mod" "$root/hack/kube/go.sum" "$root/hack/kube/etcd/go.mod" "$root/hack/kube/etcd/go.sum"; echo "$flags_version") | sha256sum | cut -c1-12)"
cache="${FUSIONHOOK_KUBE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/fusionhook/kube}/$kube_version-etcd-$etcd_version-$key"
bin="$root/target/kube/bin"
mkdir -p "$cache" "$bin"
exec 9>"$cache/.lock"
flock 9

say() { echo "install-kube: $*" >&2; }

command -v go >/dev/null || { say "needs Go 1.26 or later (go not found)"; exit 1; }

# Builds one command with a progress line every 15 s (packages compiled so far).
build() { # name module-dir package
  local name="$1" dir="$2" package="$3" started=$SECONDS total log
  total="$(cd "$dir" && GOFLAGS=-mod=mod go list -deps "$package" 2>/dev/null | wc -l || echo '?')"
  say "building $name ($package, about $total packages; the first build takes minutes)"
  log="$(mktemp)"
  local stamp="k8s.io/component-base/version"
  local client="k8s.io/client-go/pkg/version"
  # Change flags_version above when these change.
  local flags="-s -w"
  if [[ "$name" != etcd ]]; then
    for v in "$stamp" "$client"; do
      flags="$flags -X $v.gitVersion=$kube_version -X $v.gitMajor=1 -X $v.gitMinor=37 -X $v.gitTreeState=clean"
    done
  fi
  (cd "$dir" && GOCACHE="$cache/.gocache" GOFLAGS=-mod=mod CGO_ENABLED=0 go build -v -trimpath -ldflags "$flags" -o "$cache/$name.tmp" "$package") >"$log" 2>&1 &
  local pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    sleep 15
    kill -0 "$pid" 2>/dev/null && say "  $name: $(grep -vc '^go: downloading' "$log" || true)/$total packages compiled, $((SECONDS - started)) s"
  done
  if ! wait "$pid"; then
    grep -v '^go: downloading' "$log" | grep -vE '^[a-z0-9.-]+(/[A-Za-z0-9._~-]+)+$' | tail -30 >&2
    rm -f "$log"
    say "building $name failed (the lines above say why)"
    exit 1
  fi
  rm -f "$log"
  mv "$cache/$name.tmp" "$cache/$name"
  say "built $name in $((SECONDS - started)) s"
}

assets="${KUBEBUILDER_ASSETS:-}"
for name in etcd kube-apiserver kube-controller-manager; do
  if [[ -n "$assets" && -x "$assets/$name" ]]; then
    ln -sfn "$assets/$name" "$bin/$name"
    continue
  fi
  if [[ ! -x "$cache/$name" ]]; then
    case "$name" in
      etcd) build etcd "$root/hack/kube/etcd" go.etcd.io/etcd/server/v3 ;;
      *) build "$name" "$root/hack/kube" "k8s.io/kubernetes/cmd/$name" ;;
    esac
  fi
  ln -sfn "$cache/$name" "$bin/$name"
done
# The Go build cache of these builds (several GiB) is of no use once the
# binaries are in the cache; a failed build keeps it, so a rerun resumes.
rm -rf "$cache/.gocache"
# Builds of other pins (an older go.mod) are not used again: they go,
# unless another run of this script holds their lock (it is building them).
for other in "$(dirname "$cache")"/*; do
  if [[ "$other" != "$cache" && -d "$other" ]]; then
    flock -n "$other/.lock" rm -rf "$other" || true
  fi
done
echo "$bin"
