// A receiver for tests: verifies each POST with the TypeScript client's verifyDelivery under
// the secrets given as arguments and answers 200 with what it verified, or 401 with the reason.
// Usage: node verify_server.mjs DIST_INDEX SECRET [SECRET]; prints its port on the first line.
import http from "node:http";
import { pathToFileURL } from "node:url";

const [index, ...secrets] = process.argv.slice(2);
const { verifyDelivery, DeliveryVerificationError } = await import(pathToFileURL(index).href);

const server = http.createServer(async (incoming, outgoing) => {
  const chunks = [];
  for await (const chunk of incoming) chunks.push(chunk);
  const request = new Request(`http://127.0.0.1${incoming.url}`, {
    method: incoming.method,
    headers: incoming.headers,
    body: Buffer.concat(chunks),
  });
  try {
    const delivery = await verifyDelivery(request, secrets);
    outgoing.writeHead(200, { "content-type": "application/json" });
    outgoing.end(JSON.stringify({ ...delivery, createdAt: delivery.createdAt.toISOString() }));
  } catch (error) {
    const reason = error instanceof DeliveryVerificationError ? error.reason : String(error);
    outgoing.writeHead(401, { "content-type": "application/json" });
    outgoing.end(JSON.stringify({ reason }));
  }
});
server.listen(0, "127.0.0.1", () => console.log(server.address().port));
