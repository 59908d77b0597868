#!/usr/bin/env bash
# Install what the dashboard's browser test needs: Debian's chromium (headless
# capable) and a font for readable screenshots. Idempotent; concurrent callers
# (parallel tests, dev-deps.sh) are serialised so apt runs once.
set -euo pipefail

exec 9>"${TMPDIR:-/tmp}/shopstream-install-browser.lock"
flock 9

missing=()
[[ -x /usr/bin/chromium ]] || missing+=(chromium)
fc-list 2>/dev/null | grep -qi liberation || missing+=(fonts-liberation)
if (( ${#missing[@]} == 0 )); then
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "install-browser: missing ${missing[*]}; install them with your package manager" >&2
  exit 1
fi
as_root() { if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi; }
echo "install-browser: installing Debian packages: ${missing[*]}" >&2
as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
