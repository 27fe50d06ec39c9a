// The `deliver` benchmark's receiver: answers every request 200 `{}` at once, keep-alive.
// node bench/receiver.js PORT   (prints "listening PORT" when ready)
"use strict";
const http = require("http");

const port = Number(process.argv[2] || 0);
const body = Buffer.from("{}");
const server = http.createServer((req, res) => {
  req.on("data", () => {});
  req.on("end", () => {
    res.writeHead(200, { "content-type": "application/json", "content-length": body.length });
    res.end(body);
  });
});
server.keepAliveTimeout = 60000;
server.headersTimeout = 65000;
server.listen(port, "127.0.0.1", () => {
  console.log(`listening ${server.address().port}`);
});
process.on("SIGTERM", () => process.exit(0));
