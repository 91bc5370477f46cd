#!/usr/bin/env bash
# Makes sure the headless browser that the dashboard test drives is on this machine: Debian's
# chromium and its chromedriver. A fresh machine without them gets the Debian packages.
set -euo pipefail
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "chromium and chromedriver are missing; install them (apt-get install chromium chromium-driver)" >&2
  exit 1
fi
echo "installing chromium and chromedriver (Debian packages chromium, chromium-driver)"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq chromium chromium-driver >/dev/null
