#!/usr/bin/env bash
# Makes sure the PostgreSQL server binaries that the tests start are on this machine.
# The machine image usually has them; a fresh machine without them gets Debian's package.
set -euo pipefail
if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "PostgreSQL server binaries are missing; install them (e.g. apt-get install postgresql)" >&2
  exit 1
fi
echo "installing PostgreSQL server binaries (Debian package postgresql)"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq postgresql >/dev/null
