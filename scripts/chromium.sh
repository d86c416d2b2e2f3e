#!/usr/bin/env bash
# Chromium for the status page's browser test (crates/mlpredict/tests/status_page.rs):
# Debian's `chromium` package, run headless. No browser download of its own.
#
#   scripts/chromium.sh deps     install chromium with apt-get, if missing
#   scripts/chromium.sh path     print the chromium the tests use (MLPREDICT_CHROMIUM, else the PATH's)
set -euo pipefail

die() { echo "chromium.sh: error: $*" >&2; exit 1; }
note() { echo "chromium.sh: $*" >&2; }

find_chromium() {
  if [[ -n "${MLPREDICT_CHROMIUM:-}" ]]; then
    [[ -x "$MLPREDICT_CHROMIUM" ]] || die "MLPREDICT_CHROMIUM=$MLPREDICT_CHROMIUM is not an executable"
    printf '%s\n' "$MLPREDICT_CHROMIUM"
  else
    command -v chromium
  fi
}

cmd_deps() {
  if find_chromium >/dev/null 2>&1; then
    note "chromium is present; nothing to install"
    return 0
  fi
  command -v apt-get >/dev/null 2>&1 ||
    die "no apt-get here: install Chromium with this system's package manager (or set MLPREDICT_CHROMIUM)"
  local sudo=()
  if [[ "$(id -u)" != 0 ]]; then
    command -v sudo >/dev/null 2>&1 || die "installing packages needs root (or sudo)"
    sudo=(sudo)
  fi
  "${sudo[@]}" apt-get update
  note "installing: chromium"
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium
}

case "${1:-}" in
  deps) cmd_deps ;;
  path) find_chromium || die "chromium not found (run: $0 deps)" ;;
  *) die "usage: $0 deps | path" ;;
esac
