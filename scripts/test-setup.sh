#!/usr/bin/env bash
# Test prerequisites that do not come from PyPI, installed from Debian's packages when missing
# and we are root; otherwise the tests that need them skip with a message saying so:
# - headless Chromium renders report.html in the report tests;
# - PostgreSQL's server (initdb, pg_ctl) backs the MLflow server of test_tracking_postgres.py.
set -u

# install_missing PACKAGE PURPOSE: apt-get install PACKAGE (we checked it is absent)
install_missing() {
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing Debian $1 for $2..."
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$1" >/dev/null) \
      || echo "warning: could not install $1; $2 will be skipped"
  fi
}

command -v chromium >/dev/null 2>&1 || install_missing chromium "the report rendering test"
# Debian keeps the server binaries out of PATH, one folder per major version
compgen -G "/usr/lib/postgresql/*/bin/pg_ctl" >/dev/null \
  || install_missing postgresql "the PostgreSQL tracking test"
exit 0
