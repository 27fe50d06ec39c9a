#!/usr/bin/env bash
# Install the peer job systems used by the side-by-side benchmark into
# bench/.peers/ (git-ignored).  Never touches the project venv or
# pyproject.toml.  Safe to run repeatedly: it only installs what is missing
# or at the wrong version.
#
#   bench/.peers/node/   npm prefix with bullmq + pg-boss
#   bench/.peers/venv/   Python venv with procrastinate + pgqueuer
#
# Versions can be overridden from the environment, e.g.
#   BULLMQ_SPEC=bullmq@^6 bash bench/peers/setup.sh
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PEERS="$(cd "$HERE/.." && pwd)/.peers"
NODE_DIR="$PEERS/node"
VENV="$PEERS/venv"

# pg-boss 11+ requires Node >= 22; 10.x is the newest line that supports Node 20.
BULLMQ_SPEC="${BULLMQ_SPEC:-bullmq@^5}"
PGBOSS_SPEC="${PGBOSS_SPEC:-pg-boss@^10}"
PROCRASTINATE_SPEC="${PROCRASTINATE_SPEC:-procrastinate>=3.0,<4}"
PGQUEUER_SPEC="${PGQUEUER_SPEC:-pgqueuer>=0.20}"
PYTHON="${PEERS_PYTHON:-python3}"

log() { printf '[peers/setup] %s\n' "$*" >&2; }

mkdir -p "$NODE_DIR"

# ---- npm peers -------------------------------------------------------------
command -v node >/dev/null || { log "node not found"; exit 1; }
command -v npm >/dev/null || { log "npm not found"; exit 1; }

if [ ! -f "$NODE_DIR/package.json" ]; then
  log "creating $NODE_DIR/package.json"
  cat > "$NODE_DIR/package.json" <<'JSON'
{
  "name": "conveyor-bench-peers",
  "version": "0.0.0",
  "private": true,
  "description": "Peer job systems for Conveyor's side-by-side benchmark (not a project dependency)",
  "type": "module"
}
JSON
fi

node_has() {  # node_has <pkg> <major>
  local v
  v="$(node -e "try{console.log(require('$NODE_DIR/node_modules/$1/package.json').version)}catch(e){}" 2>/dev/null || true)"
  [ -n "$v" ] && [ "${v%%.*}" = "$2" ]
}
want_major() { local s="${1##*@}"; s="${s#^}"; s="${s#~}"; echo "${s%%.*}"; }

if node_has bullmq "$(want_major "$BULLMQ_SPEC")" && node_has pg-boss "$(want_major "$PGBOSS_SPEC")"; then
  log "npm peers already installed"
else
  log "npm install $BULLMQ_SPEC $PGBOSS_SPEC"
  npm install --prefix "$NODE_DIR" --no-audit --no-fund --save "$BULLMQ_SPEC" "$PGBOSS_SPEC" >&2
fi

# ---- Python peers ----------------------------------------------------------
if [ ! -x "$VENV/bin/python" ]; then
  log "creating venv $VENV"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip >&2
fi

if "$VENV/bin/python" -c 'import procrastinate, pgqueuer, asyncpg, psycopg' 2>/dev/null; then
  log "python peers already installed"
else
  log "pip install $PROCRASTINATE_SPEC $PGQUEUER_SPEC asyncpg psycopg[binary]"
  "$VENV/bin/python" -m pip install --quiet \
    "$PROCRASTINATE_SPEC" "$PGQUEUER_SPEC" asyncpg "psycopg[binary,pool]" >&2
fi

# ---- report ----------------------------------------------------------------
node -e "
for (const p of ['bullmq','pg-boss']) {
  console.error('[peers/setup] ' + p + ' ' + require('$NODE_DIR/node_modules/' + p + '/package.json').version)
}"
"$VENV/bin/python" - <<'PY' >&2
from importlib.metadata import version
for p in ("procrastinate", "pgqueuer", "asyncpg", "psycopg"):
    print(f"[peers/setup] {p} {version(p)}")
PY
log "done"
