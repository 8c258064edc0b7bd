// The HTTP client the peer's task and its ceiling share: POST a body, resolve
// on 2xx, throw on anything else (so that graphile-worker retries the job).
// Two flavours, both keep-alive: Node's `http` with a keep-alive Agent, and
// the global `fetch` (undici). A 5 s timeout per request, as redrive's drain
// destination has (`attempt_timeout = 5s`).
import http from "node:http";

const TIMEOUT_MS = 5000;

/**
 * @param {{ kind: "http" | "fetch", base: string, concurrency: number }} opts
 * @returns {(path: string, body: string) => Promise<void>}
 */
export function makePoster({ kind, base, concurrency }) {
  const url = new URL(base);
  if (kind === "fetch") {
    return async (path, body) => {
      const res = await fetch(new URL(path, url), {
        method: "POST",
        headers: { "content-type": "application/json" },
        body,
        signal: AbortSignal.timeout(TIMEOUT_MS),
      });
      // Drain the (empty) body so that the connection goes back to the pool.
      await res.arrayBuffer();
      if (!res.ok) throw new Error(`sink answered ${res.status}`);
    };
  }
  if (kind !== "http") throw new Error(`unknown client ${kind}`);
  // One socket per concurrent job at most, all kept open between jobs.
  const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
  const host = url.hostname;
  const port = Number(url.port || 80);
  return (path, body) =>
    new Promise((resolve, reject) => {
      const req = http.request(
        {
          agent,
          host,
          port,
          method: "POST",
          path,
          headers: {
            "content-type": "application/json",
            "content-length": Buffer.byteLength(body),
          },
        },
        (res) => {
          res.on("data", () => {});
          res.on("end", () => {
            const s = res.statusCode ?? 0;
            if (s >= 200 && s < 300) resolve();
            else reject(new Error(`sink answered ${s}`));
          });
          res.on("error", reject);
        },
      );
      req.setTimeout(TIMEOUT_MS, () => req.destroy(new Error("timed out")));
      req.on("error", reject);
      req.end(body);
    });
}

/** CPU seconds the whole machine spent working (user, nice, system, irq,
 * softirq of every process; not idle, iowait or steal), from /proc/stat. */
export async function machineBusySeconds() {
  const { readFile } = await import("node:fs/promises");
  try {
    const line = (await readFile("/proc/stat", "utf8")).split("\n")[0];
    const f = line.trim().split(/\s+/).slice(1).map(Number);
    // user nice system idle iowait irq softirq steal ...
    return (f[0] + f[1] + f[2] + f[5] + f[6]) / 100;
  } catch {
    return NaN;
  }
}

/** CPU seconds (user + system) of each live process named `name`, by pid,
 * from /proc/PID/stat. */
export async function cpuByProcess(name) {
  const { readdir, readFile } = await import("node:fs/promises");
  const out = new Map();
  for (const pid of await readdir("/proc")) {
    if (!/^\d+$/.test(pid)) continue;
    try {
      const stat = await readFile(`/proc/${pid}/stat`, "utf8");
      const open = stat.indexOf("(");
      const close = stat.lastIndexOf(")");
      if (stat.slice(open + 1, close) !== name) continue;
      const f = stat.slice(close + 2).split(" ");
      // Fields 14 and 15 of the line (utime, stime), in clock ticks.
      out.set(pid, (Number(f[11]) + Number(f[12])) / 100);
    } catch {
      // The process went away meanwhile.
    }
  }
  return out;
}

/** The CPU seconds the processes alive at `after` spent since `before`
 * (processes born in between count from zero; those gone are not counted). */
export function cpuSince(before, after) {
  let s = 0;
  for (const [pid, cpu] of after) s += cpu - (before.get(pid) ?? 0);
  return s;
}
