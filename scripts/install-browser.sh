#!/usr/bin/env bash
# Makes sure Debian's Chromium is installed for the end-to-end browser tests
# (tests/e2e/, driven by Playwright with `executable_path`: Playwright's own browser
# downloads are never used). Idempotent: does nothing when a Chromium already runs.
# Prints the browser's path on standard output; messages go to standard error.
#
#   ./scripts/install-browser.sh            # install if missing, print the path
#   VIGIL_CHROMIUM=/path/to/chrome ./scripts/install-browser.sh   # use that one
set -euo pipefail

works() { [ -n "${1:-}" ] && [ -x "$1" ] && "$1" --version >/dev/null 2>&1; }

find_browser() {
  local candidate
  for candidate in "${VIGIL_CHROMIUM:-}" /usr/bin/chromium "$(command -v chromium 2>/dev/null || true)" \
                   "$(command -v chromium-browser 2>/dev/null || true)"; do
    if works "$candidate"; then
      echo "$candidate"
      return 0
    fi
  done
  return 1
}

if path=$(find_browser); then
  echo "$path"
  exit 0
fi

if [ -n "${VIGIL_CHROMIUM:-}" ]; then
  echo "install-browser: VIGIL_CHROMIUM=$VIGIL_CHROMIUM does not run" >&2
  exit 1
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "install-browser: Chromium is missing; install it as root: apt-get install chromium" >&2
  exit 1
fi

echo "install-browser: installing Debian's chromium (once) ..." >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >&2
apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >&2

if path=$(find_browser); then
  echo "$path"
  exit 0
fi
echo "install-browser: chromium was installed but does not start (try: chromium --headless --version)" >&2
exit 1
