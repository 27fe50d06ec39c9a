// A TLS server for delivery tests that offers h2 and http/1.1 by ALPN (the client's offer
// decides). Usage: node tls_server.mjs CERT_PEM KEY_PEM. Prints its port on the first line,
// then one JSON line per TLS connection ({"connection": n}) and per request (path, HTTP
// version, headers, base64 body). Each path answers one way, as tests/delivery_server.py.
import http2 from "node:http2";
import fs from "node:fs";

const [certFile, keyFile] = process.argv.slice(2);
const hits = new Map();
let connections = 0;

const server = http2.createSecureServer(
  { cert: fs.readFileSync(certFile), key: fs.readFileSync(keyFile), allowHTTP1: true },
  async (req, res) => {
    const chunks = [];
    for await (const chunk of req) chunks.push(chunk);
    const path = req.url;
    const n = (hits.get(path) ?? 0) + 1;
    hits.set(path, n);
    const headers = Object.fromEntries(
      Object.entries(req.headers).filter(([name]) => !name.startsWith(":")),
    );
    const body = Buffer.concat(chunks).toString("base64");
    console.log(JSON.stringify({ path, version: req.httpVersion, headers, body }));
    const answer = (status, extra, text) => {
      res.writeHead(status, extra);
      res.end(text);
    };
    if (path === "/close") {
      if (req.httpVersion === "2.0") req.stream.session.destroy();
      else req.socket.destroy();
      return;
    }
    if (path === "/slow") await new Promise((done) => setTimeout(done, 10000));
    if (path === "/huge") {
      res.writeHead(500, { "content-length": String(50_000_000) });
      const piece = Buffer.alloc(50_000, "x");
      for (let i = 0; i < 1000 && !res.destroyed && !req.stream?.destroyed; i++) {
        if (!res.write(piece)) {
          await new Promise((done) => {
            const go = () => {
              res.off("drain", go).off("close", go);
              done();
            };
            res.on("drain", go).on("close", go);
          });
        }
      }
      res.end();
      return;
    }
    const json = { "content-type": "application/json" };
    if (path === "/ok") answer(200, json, '{"received": true}');
    else if (path === "/version") answer(200, json, JSON.stringify({ http_version: req.httpVersion }));
    else if (path === "/flaky") n === 1 ? answer(500, {}, "boom") : answer(200, {}, "fine");
    else if (path === "/busy") n === 1 ? answer(429, { "retry-after": "1" }, "slow down") : answer(204, {}, "");
    else if (path === "/gone") answer(410, {}, "gone");
    else if (path === "/missing") answer(404, {}, "no such route");
    else if (path === "/redirect") answer(302, { location: "https://example.com/new" }, "");
    else answer(404, {}, "unknown path");
  },
);
server.on("secureConnection", () => console.log(JSON.stringify({ connection: ++connections })));
server.on("sessionError", () => {});
server.on("clientError", () => {});
server.listen(0, "127.0.0.1", () => console.log(server.address().port));
