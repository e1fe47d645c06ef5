#!/usr/bin/env bash
# The test command (README.md, .ci/run): installs what the tests need and is missing, then runs
# `cargo test --locked` with the arguments given (e.g. `scripts/test.sh --test cli postgres::`).
# The PostgreSQL tests start their own server from PostgreSQL's server binaries (initdb, postgres):
# without them, Debian's `postgresql` package is installed; without Chromium, Debian's `chromium`
# (both need root, as CI runs).
set -euo pipefail
cd "$(dirname "$0")/.."

have_pg() {
  [ -n "${FANOUT_PG_BINDIR:-}" ] && [ -x "$FANOUT_PG_BINDIR/initdb" ] && return 0
  command -v pg_config >/dev/null 2>&1 && [ -x "$(pg_config --bindir)/initdb" ] && return 0
  compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null
}

if ! have_pg; then
  echo "scripts/test.sh: installing PostgreSQL (the tests run a private server)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq postgresql >/dev/null
fi
# The report test opens its HTML in headless Chromium (Debian's package).
if ! command -v chromium >/dev/null 2>&1; then
  echo "scripts/test.sh: installing Chromium (the report test renders its HTML)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq chromium >/dev/null
fi
# The server runs as nobody when the tests run as root; setpriv comes with util-linux.
if [ "$(id -u)" = 0 ] && ! command -v setpriv >/dev/null 2>&1; then
  apt-get update -qq && apt-get install -y -qq util-linux >/dev/null
fi

exec cargo test --locked "$@"
