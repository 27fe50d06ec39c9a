import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, test } from "node:test";

import { deliveryRequest } from "@conveyor/client";

const SECRET = "whsec_" + Buffer.from("the examples' endpoint secret 32").toString("base64");
const PREVIOUS = "whsec_" + Buffer.from("the secret before the rotation!!").toString("base64");
process.env.CONVEYOR_SIGNING_SECRETS = `${SECRET} ${PREVIOUS}`;

const { POST: sendReceipt } = await import("../examples/app/api/send-receipt/route.js");
const { POST: nightlyReport } = await import("../examples/app/api/nightly-report/route.js");
const { receiptRouteAnswers } = await import("../examples/test-route.js");
const shop = await import("../examples/shop.js");

const root = new URL("../../", import.meta.url); // the package folder, above dist/

describe("the route examples", () => {
  test("send-receipt: a signed delivery sends the receipt and completes with a result", async () => {
    const request = await deliveryRequest(
      "http://localhost/api/send-receipt",
      { task: "send-receipt", args: { order_id: 42 } },
      SECRET,
      { webhookId: "msg_example" },
    );
    const response = await sendReceipt(request);
    assert.equal(response.status, 200);
    assert.deepEqual(await response.json(), { sent_to: "ada@example.com" });
    assert.equal(shop.receiptsSent.get("msg_example")?.id, 42);
  });

  test("send-receipt: signed with the previous secret during a rotation, still accepted", async () => {
    const request = await deliveryRequest("http://x/", { task: "send-receipt", args: { order_id: 42 } }, PREVIOUS);
    assert.equal((await sendReceipt(request)).status, 200);
  });

  test("send-receipt: a missing order cancels (410), a busy mail server retries (503)", async () => {
    const gone = await deliveryRequest("http://x/", { task: "send-receipt", args: { order_id: 1 } }, SECRET);
    assert.equal((await sendReceipt(gone)).status, 410);
    shop.setMailServerBusy(true);
    try {
      const busy = await deliveryRequest("http://x/", { task: "send-receipt", args: { order_id: 42 } }, SECRET);
      const response = await sendReceipt(busy);
      assert.equal(response.status, 503);
      assert.equal(response.headers.get("retry-after"), "30");
    } finally {
      shop.setMailServerBusy(false);
    }
  });

  test("send-receipt: a forged request gets 401", async () => {
    const forged = await deliveryRequest("http://x/", { task: "send-receipt", args: { order_id: 42 } }, "guess");
    assert.equal((await sendReceipt(forged)).status, 401);
  });

  test("nightly-report: verifyDelivery alone, 200 when signed and 401 when not", async () => {
    const signed = await deliveryRequest("http://x/", { id: 5, task: "nightly-report" }, SECRET);
    const response = await nightlyReport(signed);
    assert.equal(response.status, 200);
    assert.equal((await response.json()).job, "5");
    const unsigned = new Request("http://x/", { method: "POST", body: "{}" });
    assert.equal((await nightlyReport(unsigned)).status, 401);
  });

  test("test-route: the docs' route test passes", async () => {
    assert.equal(await receiptRouteAnswers(SECRET), 200);
  });
});

describe("the docs show the example files as they are", () => {
  // A block written as <!-- example: examples/FILE --> then a fenced block must equal FILE.
  for (const doc of ["README.md", "../../docs/typescript.md"]) {
    test(doc, () => {
      const text = readFileSync(new URL(doc, root), "utf8");
      const blocks = [...text.matchAll(/<!-- example: (\S+) -->\n```\w*\n([\s\S]*?)```/g)];
      assert.ok(blocks.length > 0, `${doc} shows no example file`);
      for (const [, file, code] of blocks) {
        assert.equal(code, readFileSync(new URL(file!, root), "utf8"), `${doc}: ${file} differs`);
      }
    });
  }
});
