// The peer benchmark's sink: a bare Node `http` server in its own process
// that answers every request 200 with an empty body (keep-alive), and counts
// the POSTs it saw. `GET /__count` answers that count and the sink's CPU time
// so far in µs (`COUNT CPU_US`), so that the drain can check that every job
// reached the sink and give the sink's CPU per job.
//
//   node sink.mjs PORT
import http from "node:http";

const port = Number(process.argv[2] ?? 18080);
let posts = 0;

const server = http.createServer((req, res) => {
  if (req.method === "GET" && req.url === "/__count") {
    const cpu = process.cpuUsage();
    const body = `${posts} ${cpu.user + cpu.system}`;
    res.writeHead(200, { "content-length": Buffer.byteLength(body) });
    res.end(body);
    return;
  }
  // Read the body to its end before answering, as a real receiver would.
  req.on("data", () => {});
  req.on("end", () => {
    if (req.method === "POST") posts++;
    res.writeHead(200, { "content-length": 0 });
    res.end();
  });
});
// Keep idle client connections open for the whole run.
server.keepAliveTimeout = 120_000;
server.headersTimeout = 125_000;
server.listen(port, "127.0.0.1", () => {
  console.log(`sink listening on 127.0.0.1:${port}`);
});
for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, () => {
    server.closeAllConnections();
    server.close(() => process.exit(0));
  });
}
