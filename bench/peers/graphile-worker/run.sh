#!/usr/bin/env bash
# graphile-worker's drain of N stored HTTP POST jobs, three runs, each just
# after the raw ceiling of the same Node client against the same sink.
#
#   bash bench/peers/graphile-worker/run.sh [N]        # N defaults to 100000
#
# Settings (environment): CONCURRENCY (32), POLL_INTERVAL (2000, ms),
# MAX_POOL (CONCURRENCY + 2), CLIENT (http | fetch; http), RUNS (3),
# CEILING_SECONDS (5), SINK_PORT (18099),
# PG_URL (postgres://postgres@127.0.0.1:5432), DB (graphile_bench).
set -euo pipefail

N="${1:-100000}"
CONCURRENCY="${CONCURRENCY:-32}"
POLL_INTERVAL="${POLL_INTERVAL:-2000}"
MAX_POOL="${MAX_POOL:-$((CONCURRENCY + 2))}"
CLIENT="${CLIENT:-http}"
RUNS="${RUNS:-3}"
CEILING_SECONDS="${CEILING_SECONDS:-5}"
SINK_PORT="${SINK_PORT:-18099}"
PG_URL="${PG_URL:-postgres://postgres@127.0.0.1:5432}"
DB="${DB:-graphile_bench}"
SINK="http://127.0.0.1:${SINK_PORT}"

cd "$(dirname "${BASH_SOURCE[0]}")"
if [ ! -d node_modules ]; then
  npm ci --no-audit --no-fund >&2
fi
VERSION="$(node -p 'require("./node_modules/graphile-worker/package.json").version')"

SINK_PID=""
SINK_LOG="$(mktemp)"
cleanup() {
  if [ -n "$SINK_PID" ]; then
    kill "$SINK_PID" 2>/dev/null || true
    wait "$SINK_PID" 2>/dev/null || true
  fi
  node drain.mjs --cleanup --pg "$PG_URL" --db "$DB" || true
  rm -f "$SINK_LOG"
}
trap cleanup EXIT

# The sink, in its own process; wait for it to listen.
node sink.mjs "$SINK_PORT" >"$SINK_LOG" 2>&1 &
SINK_PID=$!
for _ in $(seq 1 100); do
  grep -q listening "$SINK_LOG" && break
  kill -0 "$SINK_PID" 2>/dev/null || { cat "$SINK_LOG" >&2; exit 1; }
  sleep 0.1
done
grep -q listening "$SINK_LOG" || { echo "the sink did not start" >&2; exit 1; }

echo "graphile-worker ${VERSION}, node $(node --version), $(nproc) cores; N=${N} concurrency=${CONCURRENCY} max_pool=${MAX_POOL} poll_interval=${POLL_INTERVAL}ms client=${CLIENT}"
field() { tr ' ' '\n' <<<"$1" | sed -n "s/^$2=//p"; }
rates=()
for run in $(seq 1 "$RUNS"); do
  ceiling="$(node ceiling.mjs --sink "$SINK" --concurrency "$CONCURRENCY" --seconds "$CEILING_SECONDS" --client "$CLIENT")"
  out="$(node drain.mjs --n "$N" --concurrency "$CONCURRENCY" --max-pool "$MAX_POOL" \
    --poll-interval "$POLL_INTERVAL" --client "$CLIENT" --sink "$SINK" --pg "$PG_URL" --db "$DB")"
  rate="$(field "$out" jobs_per_s)"
  ceil="$(field "$ceiling" ceiling_req_per_s)"
  rates+=("$rate")
  ratio="$(awk -v r="$rate" -v c="$ceil" 'BEGIN { printf "%.3f", r / c }')"
  echo "run ${run}: graphile-worker ${VERSION} drain N=${N} concurrency=${CONCURRENCY}: ${rate} jobs/s; ${ratio} of the ceiling just before it (${ceil} req/s); $(field "$out" seconds) s; from the first job $(field "$out" from_first_job_per_s) jobs/s; CPU µs/job: worker $(field "$out" worker_cpu_us_per_job), sink $(field "$out" sink_cpu_us_per_job), postgres $(field "$out" postgres_cpu_us_per_job), machine $(field "$out" machine_cpu_us_per_job) (ceiling, per request: client $(field "$ceiling" client_cpu_us_per_req), sink $(field "$ceiling" sink_cpu_us_per_req), machine $(field "$ceiling" machine_cpu_us_per_req)); failed attempts $(field "$out" failed_attempts)"
done
median="$(printf '%s\n' "${rates[@]}" | sort -n | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.0f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }')"
joined="$(IFS=,; echo "${rates[*]}" | sed 's/,/, /g')"
echo "graphile-worker ${VERSION} drain N=${N} concurrency=${CONCURRENCY}: ${median} jobs/s (runs: ${joined})"
