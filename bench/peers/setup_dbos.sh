#!/usr/bin/env bash
# Install DBOS Transact for `python -m bench workflows` into bench/.peers/dbos-venv/
# (git-ignored; never the project venv). Safe to run again: it installs only what is missing.
#
#   DBOS_SPEC='dbos==3.4.0' bash bench/peers/setup_dbos.sh
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="$(cd "$HERE/.." && pwd)/.peers/dbos-venv"
DBOS_SPEC="${DBOS_SPEC:-dbos>=3,<4}"
PYTHON="${PEERS_PYTHON:-python3}"

log() { printf '[peers/setup_dbos] %s\n' "$*" >&2; }

if [ ! -x "$VENV/bin/python" ]; then
  log "creating venv $VENV"
  "$PYTHON" -m venv "$VENV"
fi
if "$VENV/bin/python" -c 'import dbos' 2>/dev/null; then
  log "dbos already installed"
else
  log "pip install $DBOS_SPEC"
  "$VENV/bin/python" -m pip install --quiet "$DBOS_SPEC" >&2
fi
"$VENV/bin/python" -c 'from importlib.metadata import version; print("[peers/setup_dbos] dbos", version("dbos"))' >&2
