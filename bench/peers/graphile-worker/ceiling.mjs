// The peer's raw ceiling: the same Node HTTP client the task uses, with no
// queue behind it, POSTing the drain's body to the same sink from
// `concurrency` loops for a few seconds. Mirrors the harness's "raw ceiling:
// engine's HTTP client" row, so that the drain can be given as a share of it.
//
//   node ceiling.mjs --sink http://127.0.0.1:18099 --concurrency 32 --seconds 5 --client http
// Prints one line of key=value pairs on stdout.
import { parseArgs } from "node:util";
import { makePoster, machineBusySeconds } from "./client.mjs";

const { values: a } = parseArgs({
  options: {
    sink: { type: "string", default: "http://127.0.0.1:18099" },
    concurrency: { type: "string", default: "32" },
    seconds: { type: "string", default: "5" },
    client: { type: "string", default: "http" },
  },
});
const concurrency = Number(a.concurrency);
const post = makePoster({ kind: a.client, base: a.sink, concurrency });
const body = JSON.stringify({ event: "order.created", amount: 42 });

let done = 0;
let failed = 0;
let stop = false;
const loop = async (k) => {
  let i = k;
  while (!stop) {
    try {
      await post(`/raw/${i}`, body);
      done++;
    } catch {
      failed++;
    }
    i += concurrency;
  }
};
// A short warm-up (connections opened, code compiled), then the timed part.
const warm = Array.from({ length: concurrency }, (_, k) => loop(k));
await new Promise((r) => setTimeout(r, 500));
// The sink's CPU µs so far (`GET /__count` answers `COUNT CPU_US`).
const sinkCpu = async () => Number((await (await fetch(new URL("/__count", a.sink))).text()).split(" ")[1]);
const s0 = await sinkCpu();
const [d0, cpu0, m0, t0] = [done, process.cpuUsage(), await machineBusySeconds(), performance.now()];
await new Promise((r) => setTimeout(r, Number(a.seconds) * 1000));
const [d1, cpu1, m1, t1] = [done, process.cpuUsage(cpu0), await machineBusySeconds(), performance.now()];
const s1 = await sinkCpu();
stop = true;
await Promise.all(warm);
const n = d1 - d0;
const rate = n / ((t1 - t0) / 1000);
const procUs = ((cpu1.user + cpu1.system) / n).toFixed(1);
const machineUs = (((m1 - m0) * 1e6) / n).toFixed(1);
console.log(
  `ceiling_req_per_s=${rate.toFixed(0)} requests=${n} failed=${failed} client_cpu_us_per_req=${procUs} sink_cpu_us_per_req=${((s1 - s0) / n).toFixed(1)} machine_cpu_us_per_req=${machineUs}`,
);
