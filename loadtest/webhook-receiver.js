// A webhook receiver for load tests: answers every POST 204 after DELAY_MS (default 0),
// counting requests; prints the count every second. No dependencies.
//   node loadtest/webhook-receiver.js [port] [delay_ms]
const http = require("node:http");

const port = Number(process.argv[2] ?? 18080);
const delay = Number(process.argv[3] ?? 0);
let requests = 0, last = 0;

http.createServer((req, res) => {
  req.resume();
  req.on("end", () => {
    requests += 1;
    const answer = () => res.writeHead(204).end();
    if (delay > 0) setTimeout(answer, delay); else answer();
  });
}).listen(port, "127.0.0.1", () => console.log(`webhook receiver on 127.0.0.1:${port}, ${delay} ms per request`));

setInterval(() => {
  if (requests !== last) console.log(`${new Date().toISOString()} ${requests} requests (+${requests - last})`);
  last = requests;
}, 1000);
