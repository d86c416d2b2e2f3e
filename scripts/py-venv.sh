#!/usr/bin/env bash
# Idempotently create .venv in the repo root with the Python packages the SDK
# conformance tests need, and print the venv's python path on stdout.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
req="$root/tests/sdk/requirements.txt"
py="$venv/bin/python"
stamp="$venv/.requirements.sha256"

if [ ! -x "$py" ]; then
    python3 -m venv "$venv" >&2
fi
want="$(sha256sum "$req" | cut -d' ' -f1)"
have="$(cat "$stamp" 2>/dev/null || true)"
# reinstall only when requirements changed, so repeated runs are cheap
if [ "$want" != "$have" ]; then
    "$py" -m pip install -q --disable-pip-version-check -r "$req" >&2
    echo "$want" >"$stamp"
fi
echo "$py"
