#!/usr/bin/env bash
# One side-by-side round of docs/performance.md ("What changed in the serving path"): `unmo serve` from
# SRC (a checkout's src/ with its extension built in place) on a fresh database, driven by `unmo load` for
# 8 s with 1000-record batches (BATCH) at CONC connections; prints events/s, P95, and the CPU per record of the
# serving process (with its threads) and of PostgreSQL (every postgres process), read from /proc over
# the middle 5 s.  The database is dropped afterwards.
#
#   bench/side_by_side.sh SRC CONC [unmo serve flags...]
#   env: UNMO_BENCH_PG (default postgresql://postgres@127.0.0.1:5432), PYTHON (default .venv/bin/python),
#        BATCH (records per request, default 1000), APPS (apps the load spreads over, default 1)
set -euo pipefail
SRC=$(cd "$1" && pwd); CONC=$2; shift 2
PY=${PYTHON:-$(cd "$(dirname "$0")/.." && pwd)/.venv/bin/python}
PG=${UNMO_BENCH_PG:-postgresql://postgres@127.0.0.1:5432}
DB=sbs_$$_$RANDOM
URL=$PG/$DB
PORT=$((20000 + RANDOM % 10000))
OUT=$(mktemp -d)
trap 'kill -INT "${SPID:-0}" 2>/dev/null || true; wait 2>/dev/null || true; psql -q "$PG/postgres" -c "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1 || true; rm -rf "$OUT"' EXIT
psql -q "$PG/postgres" -c "CREATE DATABASE $DB"
export PYTHONPATH=$SRC
"$PY" -m unmo migrate --database-url "$URL" >/dev/null
"$PY" -m unmo serve --database-url "$URL" --port "$PORT" "$@" >"$OUT/serve.log" 2>&1 &
SPID=$!
for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$PORT/healthz" && break; sleep 0.1; done
"$PY" -m unmo load --url "http://127.0.0.1:$PORT" --database-url "$URL" --duration 8s --batch-size "${BATCH:-1000}" --apps "${APPS:-1}" \
    --concurrency "$CONC" --json >"$OUT/load.json" 2>/dev/null &
LPID=$!
sum_ticks() {  # clock ticks (user + system) used so far by the processes given
    local t=0 p
    for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0))); done
    echo "$t"
}
ticks() {  # by the server (all its threads, and its workers), and by PostgreSQL
    echo "$(sum_ticks "$SPID" $(pgrep -P "$SPID" || true)) $(sum_ticks $( (pgrep -x postgres; pgrep -f "postgres:") | sort -u))"
}
sleep 2
read -r s0 g0 < <(ticks); t0=$(date +%s.%N)
sleep 5
read -r s1 g1 < <(ticks); t1=$(date +%s.%N)
wait "$LPID"
"$PY" - "$OUT/load.json" "$s0" "$s1" "$g0" "$g1" "$t0" "$t1" "$(getconf CLK_TCK)" "$SRC" "$CONC" <<'PY'
import json, sys
path, s0, s1, g0, g1, t0, t1, hz, src, conc = sys.argv[1:]
r = json.load(open(path))
dt, eps = float(t1) - float(t0), r["events_per_s"]
server, pg = (int(s1) - int(s0)) / int(hz) / dt, (int(g1) - int(g0)) / int(hz) / dt
print(json.dumps({"src": src, "concurrency": int(conc), "events_per_s": round(eps), "p95_ms": r["p95_ms"],
                  "verified": r["verified"], "server_cores": round(server, 2), "server_us_per_record": round(server / eps * 1e6, 2),
                  "postgres_cores": round(pg, 2), "postgres_us_per_record": round(pg / eps * 1e6, 2)}))
PY
