#!/usr/bin/env bash
# Run every peer runner once at a small size, one run at a time, and write the
# commands and their JSON lines as Markdown (default: bench/peers/SMOKE.md).
#
#   bash bench/peers/smoke.sh [OUTFILE]
#
# Sizes can be changed with N=..., RATE=..., DURATION=... in the environment.
# Each run is bounded by `timeout 180` on top of the runners' own watchdogs.
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
OUT="${1:-$HERE/SMOKE.md}"
N="${N:-2000}"
RATE="${RATE:-50}"
DURATION="${DURATION:-10}"
PY="$ROOT/bench/.peers/venv/bin/python"

cd "$ROOT"
bash bench/peers/setup.sh 2>/dev/null || { echo "setup.sh failed" >&2; exit 1; }

versions="$(node -e "for (const p of ['bullmq','pg-boss']) console.log('- ' + p + ' ' + require('$ROOT/bench/.peers/node/node_modules/' + p + '/package.json').version)")
$("$PY" -c "from importlib.metadata import version as v; print('\n'.join(f'- {p} {v(p)}' for p in ('procrastinate','pgqueuer','asyncpg','psycopg')))")"

cmds=(
  "node bench/peers/bullmq.mjs --workload enqueue_single --jobs $N"
  "node bench/peers/bullmq.mjs --workload enqueue_bulk --jobs $N"
  "node bench/peers/bullmq.mjs --workload drain --jobs $N --concurrency 50"
  "node bench/peers/bullmq.mjs --workload latency --rate $RATE --duration $DURATION"
  "node bench/peers/pgboss.mjs --workload enqueue_single --jobs $N"
  "node bench/peers/pgboss.mjs --workload enqueue_bulk --jobs $N"
  "node bench/peers/pgboss.mjs --workload drain --jobs $N"
  "node bench/peers/pgboss.mjs --workload drain --jobs $N --batch-size 100"
  "node bench/peers/pgboss.mjs --workload latency --rate $RATE --duration $DURATION"
  "node bench/peers/pgboss.mjs --workload latency --rate $RATE --duration $DURATION --batch-size 100"
  "$PY bench/peers/procrastinate_run.py --workload enqueue_single --jobs $N"
  "$PY bench/peers/procrastinate_run.py --workload enqueue_bulk --jobs $N"
  "$PY bench/peers/procrastinate_run.py --workload drain --jobs $N"
  "$PY bench/peers/procrastinate_run.py --workload latency --rate $RATE --duration $DURATION"
  "$PY bench/peers/pgqueuer_run.py --workload enqueue_single --jobs $N"
  "$PY bench/peers/pgqueuer_run.py --workload enqueue_bulk --jobs $N"
  "$PY bench/peers/pgqueuer_run.py --workload drain --jobs $N"
  "$PY bench/peers/pgqueuer_run.py --workload latency --rate $RATE --duration $DURATION"
)

{
  echo "# Peer runner smoke run"
  echo
  echo "Date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')  "
  echo "Host: $(nproc) cores, $(node --version), $("$PY" --version 2>&1), $(psql -h 127.0.0.1 -U postgres -Atc 'show server_version' postgres 2>/dev/null | sed 's/^/PostgreSQL /'), Redis $(redis-cli info server 2>/dev/null | sed -n 's/^redis_version:\(.*\)\r\?$/\1/p' | tr -d '\r')  "
  echo "Load before the run: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo
  echo "Peer versions:"
  echo
  echo "$versions"
  echo
  echo "Runs are sequential (one benchmark at a time), small sizes: N=$N for"
  echo "enqueue/drain, latency at $RATE jobs/s for $DURATION s. These are smoke"
  echo "figures showing the runners work, not tuned benchmark results."
  echo
  echo '```'
} > "$OUT"

fails=0
for c in "${cmds[@]}"; do
  shown="${c/#$PY/bench/.peers/venv/bin/python}"
  echo "[smoke] $shown" >&2
  line="$(timeout 180 $c 2>>"$ROOT/bench/.peers/smoke.stderr.log")"
  rc=$?
  [ "$rc" -ne 0 ] && fails=$((fails + 1))
  {
    echo "\$ $shown"
    echo "${line:-<no output, exit $rc>}"
    echo
  } >> "$OUT"
  sleep 1
done
echo '```' >> "$OUT"
echo "[smoke] done, $fails failed; wrote $OUT" >&2
exit $(( fails > 0 ))
