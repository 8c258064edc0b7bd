// graphile-worker's drain of a stored backlog, for comparison with the
// "drain" row of redrive's harness (bench/harness): N jobs are stored first,
// each one HTTP POST of a small JSON body to /m/{i} on a local sink; then a
// worker starts and delivers them as fast as it can. The figure is jobs per
// second from the worker's start to the last job's completion (its row
// deleted from PostgreSQL, which is when graphile-worker emits
// `job:complete`).
//
//   node drain.mjs --n 100000 --concurrency 32 --sink http://127.0.0.1:18099
//   node drain.mjs --cleanup          # drop the benchmark's database
//
// Progress goes to stderr; one line of key=value pairs to stdout.
import { EventEmitter } from "node:events";
import { parseArgs } from "node:util";
import pg from "pg";
import { Logger, run, runMigrations } from "graphile-worker";
import { cpuByProcess, cpuSince, makePoster, machineBusySeconds } from "./client.mjs";

const { values: a } = parseArgs({
  options: {
    n: { type: "string", default: "100000" },
    concurrency: { type: "string", default: "32" },
    // Only used when a worker finds no job: a drain never waits on it (each
    // worker asks for its next job as soon as it completes one), but try it.
    "poll-interval": { type: "string", default: "2000" },
    // Default: the concurrency plus the LISTEN connection plus one spare
    // (graphile-worker warns when the pool is smaller than the concurrency).
    "max-pool": { type: "string" },
    client: { type: "string", default: "http" },
    sink: { type: "string", default: "http://127.0.0.1:18099" },
    pg: { type: "string", default: "postgres://postgres@127.0.0.1:5432" },
    db: { type: "string", default: "graphile_bench" },
    // Give up (and fail) after this many seconds.
    timeout: { type: "string", default: "900" },
    cleanup: { type: "boolean", default: false },
  },
});

const n = Number(a.n);
const concurrency = Number(a.concurrency);
const pollInterval = Number(a["poll-interval"]);
const maxPoolSize = a["max-pool"] ? Number(a["max-pool"]) : concurrency + 2;
const adminUrl = `${a.pg}/postgres`;
const dbUrl = `${a.pg}/${a.db}`;
if (!/^[a-z_][a-z0-9_]*$/.test(a.db)) throw new Error(`bad database name ${a.db}`);
const log = (msg) => process.stderr.write(`  [drain] ${msg}\n`);
let phase = "setup";

async function admin(sql) {
  const c = new pg.Client({ connectionString: adminUrl });
  await c.connect();
  try {
    await c.query(sql);
  } finally {
    await c.end();
  }
}
const dropDb = () => admin(`drop database if exists ${a.db} with (force)`);
// pg's `pool.end()` resolves once its clients are told to end, before their
// backends have gone: wait for them, so that the drop does not cut them off.
async function backendsGone() {
  const c = new pg.Client({ connectionString: adminUrl });
  await c.connect();
  try {
    for (let i = 0; i < 100; i++) {
      const r = await c.query("select count(*)::int as n from pg_stat_activity where datname = $1", [a.db]);
      if (r.rows[0].n === 0) return;
      await new Promise((r) => setTimeout(r, 50));
    }
  } finally {
    await c.end();
  }
}

if (a.cleanup) {
  await dropDb();
  process.exit(0);
}

// 1. A fresh database with graphile-worker's schema.
await dropDb();
await admin(`create database ${a.db}`);
const logger = new Logger(() => (level, message) => {
  // Warnings and errors only: a production deployment at this volume would
  // not print a line per completed job either.
  if (level === "error" || level === "warning") log(`worker ${level} (${phase}): ${message}`);
});
// The worker's pool, built as graphile-worker builds its own from
// `connectionString` and `maxPoolSize`, but owned here so that it can be
// closed (awaited) before the database is dropped.
const pool = new pg.Pool({ connectionString: dbUrl, max: maxPoolSize });
pool.on("error", (e) => log(`idle pool client: ${e.message}`));
await runMigrations({ pgPool: pool, logger });

// 2. The backlog, in one call to graphile_worker.add_jobs (not timed). Each
// payload carries the path and the JSON body redrive's drain POSTs
// (`{"event":"order.created","amount":42}`, 37 bytes, to /m/{i}).
const db = new pg.Client({ connectionString: dbUrl });
await db.connect();
let t = performance.now();
const added = await db.query(
  `select count(*)::int as n from graphile_worker.add_jobs(array(
     select row('deliver',
                json_build_object('path', '/m/' || i,
                                  'body', json_build_object('event', 'order.created', 'amount', 42)),
                null, null, null, null, null, null)::graphile_worker.job_spec
     from generate_series(0, $1::int - 1) as i))`,
  [n],
);
if (added.rows[0].n !== n) throw new Error(`stored ${added.rows[0].n} jobs, not ${n}`);
const storeSeconds = (performance.now() - t) / 1000;
// Statistics for the planner as a long-running jobs table would have, and a
// checkpoint so that the backlog's own WAL is not flushed during the drain.
await db.query("analyze graphile_worker._private_jobs");
await db.query("checkpoint");
log(`stored ${n} jobs in ${storeSeconds.toFixed(2)} s`);

// The POSTs the sink has seen, and its CPU µs so far.
const sinkCount = async () => {
  const res = await fetch(new URL("/__count", a.sink));
  return (await res.text()).split(" ").map(Number);
};

// 3. The task: one POST per job; a non-2xx answer throws, so the job is
// retried by graphile-worker's backoff.
const post = makePoster({ kind: a.client, base: a.sink, concurrency });
const taskList = {
  deliver: async (payload) => {
    await post(payload.path, JSON.stringify(payload.body));
  },
};

// 4. The drain: from the worker's start until N jobs have completed.
const events = new EventEmitter();
let completed = 0;
let failures = 0;
let firstJobAt = 0;
let finish;
const finished = new Promise((resolve) => (finish = resolve));
events.on("job:start", () => {
  if (firstJobAt === 0) firstJobAt = performance.now();
});
events.on("job:failed", () => failures++);
events.on("job:complete", ({ error }) => {
  if (!error && ++completed === n) finish(performance.now());
});
const deadline = setTimeout(() => {
  log(`timed out after ${a.timeout} s with ${completed} of ${n} done`);
  process.exit(2);
}, Number(a.timeout) * 1000);

// Not the per-job "Completed task ..." line either (its formatting is skipped).
process.env.NO_LOG_SUCCESS = "1";
const [sent0, sinkCpu0] = await sinkCount();
const cpu0 = process.cpuUsage();
const machine0 = await machineBusySeconds();
const postgres0 = await cpuByProcess("postgres");
t = performance.now();
phase = "drain";
const runner = await run({
  pgPool: pool, // max: maxPoolSize
  concurrency,
  pollInterval,
  noPreparedStatements: false, // the default: prepared statements on
  useNodeTime: false, // the default: PostgreSQL's clock
  noHandleSignals: true,
  taskList,
  logger,
  events,
});
const end = await finished;
const cpu = process.cpuUsage(cpu0);
const machine = await machineBusySeconds();
// PostgreSQL's share: this database's backends (all still connected) and the
// server's background processes (WAL writer, checkpointer...), not other
// sessions' backends.
const ours = new Set(
  (
    await db.query(
      "select pid::text from pg_stat_activity where datname = $1 or backend_type <> 'client backend'",
      [a.db],
    )
  ).rows.map((r) => r.pid),
);
const postgres1 = new Map([...(await cpuByProcess("postgres"))].filter(([pid]) => ours.has(pid)));
const postgresCpu = cpuSince(postgres0, postgres1);
const [, sinkCpu1] = await sinkCount();
clearTimeout(deadline);
const seconds = (end - t) / 1000;
const rate = n / seconds;
const fromFirst = n / ((end - firstJobAt) / 1000);
phase = "stopping";
await runner.stop();
phase = "closing the pool";
await pool.end();
phase = "checks";

// 5. Checks: no job row left, and the sink saw one POST per job.
const left = (await db.query("select count(*)::int as n from graphile_worker._private_jobs")).rows[0].n;
const sent = (await sinkCount())[0] - sent0;
await db.end();
phase = "dropping the database";
await backendsGone();
await dropDb();
if (left !== 0 || sent < n) {
  log(`FAILED: ${left} jobs left in the table, the sink saw ${sent} POSTs for ${n} jobs`);
  process.exit(1);
}
const workerUs = ((cpu.user + cpu.system) / n).toFixed(1);
const machineUs = (((machine - machine0) * 1e6) / n).toFixed(1);
log(
  `${n} jobs in ${seconds.toFixed(2)} s (first job ${((firstJobAt - t) / 1000).toFixed(3)} s after start); ` +
    `${failures} failed attempts; sink saw ${sent} POSTs`,
);
console.log(
  [
    `jobs_per_s=${rate.toFixed(0)}`,
    `from_first_job_per_s=${fromFirst.toFixed(0)}`,
    `seconds=${seconds.toFixed(3)}`,
    `n=${n}`,
    `concurrency=${concurrency}`,
    `max_pool=${maxPoolSize}`,
    `poll_interval=${pollInterval}`,
    `client=${a.client}`,
    `failed_attempts=${failures}`,
    `worker_cpu_us_per_job=${workerUs}`,
    `sink_cpu_us_per_job=${((sinkCpu1 - sinkCpu0) / n).toFixed(1)}`,
    `postgres_cpu_us_per_job=${((postgresCpu * 1e6) / n).toFixed(1)}`,
    `machine_cpu_us_per_job=${machineUs}`,
    `stored_per_s=${(n / storeSeconds).toFixed(0)}`,
  ].join(" "),
);
