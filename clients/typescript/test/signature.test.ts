import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { Webhook } from "standardwebhooks";

import {
  deliveryBody,
  DeliveryVerificationError,
  signDelivery,
  verifyDelivery,
} from "@conveyor/client";
import { anySignatureMatches, timingSafeEqual } from "../src/signature.js";

const SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const OLD_SECRET = "whsec_" + Buffer.from("the previous secret, 32 bytes ok").toString("base64");
const body = deliveryBody({ id: 7, task: "send-receipt", args: { order_id: 42 }, queue: "emails" });

function request(headers: Record<string, string>, text: string = body): Request {
  return new Request("http://localhost/api/send-receipt", { method: "POST", headers, body: text });
}

async function reason(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof DeliveryVerificationError, String(error));
    return error.reason;
  }
  assert.fail("the request was accepted");
}

describe("signatures, cross-checked with the standardwebhooks reference library", () => {
  test("its signer, our verifier", async () => {
    const now = new Date();
    const signature = new Webhook(SECRET).sign("msg_1", now, body);
    const headers = {
      "webhook-id": "msg_1",
      "webhook-timestamp": String(Math.floor(now.getTime() / 1000)),
      "webhook-signature": signature,
    };
    const delivery = await verifyDelivery(request(headers), SECRET);
    assert.equal(delivery.id, "7");
    assert.equal(delivery.task, "send-receipt");
    assert.deepEqual(delivery.args, { order_id: 42 });
    assert.equal(delivery.queue, "emails");
    assert.equal(delivery.attempt, 1);
    assert.equal(delivery.maxAttempts, 5);
    assert.equal(delivery.webhookId, "msg_1");
  });

  test("our signer, its verifier", async () => {
    const headers = await signDelivery(body, SECRET);
    assert.match(headers["webhook-signature"], /^v1,[A-Za-z0-9+/]+=*$/);
    assert.deepEqual(new Webhook(SECRET).verify(body, { ...headers }), JSON.parse(body));
  });

  test("a secret without whsec_ is its UTF-8 bytes (the library's raw format)", async () => {
    const headers = await signDelivery(body, "plain secret");
    assert.doesNotThrow(() =>
      new Webhook("plain secret", { format: "raw" }).verify(body, { ...headers }),
    );
    assert.equal((await verifyDelivery(request(headers), "plain secret")).id, "7");
  });

  test("rotation: two signatures, each secret alone verifies, with both libraries", async () => {
    const headers = await signDelivery(body, [SECRET, OLD_SECRET]);
    assert.equal(headers["webhook-signature"].split(" ").length, 2);
    for (const secret of [SECRET, OLD_SECRET]) {
      assert.equal((await verifyDelivery(request(headers), secret)).id, "7");
      assert.doesNotThrow(() => new Webhook(secret).verify(body, { ...headers }));
    }
    // and a receiver that knows both secrets accepts a request signed with either
    const signedWithOld = await signDelivery(body, OLD_SECRET);
    assert.equal((await verifyDelivery(request(signedWithOld), [SECRET, OLD_SECRET])).id, "7");
  });
});

describe("verifyDelivery refuses", () => {
  test("a tampered body", async () => {
    const headers = await signDelivery(body, SECRET);
    const tampered = body.replace('"order_id":42', '"order_id":43');
    assert.equal(await reason(verifyDelivery(request(headers, tampered), SECRET)), "bad_signature");
  });

  test("another secret", async () => {
    const headers = await signDelivery(body, OLD_SECRET);
    assert.equal(await reason(verifyDelivery(request(headers), SECRET)), "bad_signature");
  });

  test("a replay outside the 5-minute window, and a time too far ahead", async () => {
    const signedAt = new Date("2026-12-06T06:00:00Z");
    const headers = await signDelivery(body, SECRET, { timestamp: signedAt });
    const at = (seconds: number) => ({ now: new Date(signedAt.getTime() + seconds * 1000) });
    assert.equal((await verifyDelivery(request(headers), SECRET, at(300))).id, "7");
    assert.equal((await verifyDelivery(request(headers), SECRET, at(-300))).id, "7");
    assert.equal(await reason(verifyDelivery(request(headers), SECRET, at(301))), "timestamp_too_old");
    assert.equal(await reason(verifyDelivery(request(headers), SECRET, at(-301))), "timestamp_too_new");
  });

  test("a missing header", async () => {
    const headers = await signDelivery(body, SECRET);
    for (const name of ["webhook-id", "webhook-timestamp", "webhook-signature"] as const) {
      const partial: Record<string, string> = { ...headers };
      delete partial[name];
      assert.equal(await reason(verifyDelivery(request(partial), SECRET)), "missing_header");
    }
  });

  test("a timestamp that is not whole seconds", async () => {
    const headers = { ...(await signDelivery(body, SECRET)), "webhook-timestamp": "1.5e9" };
    assert.equal(await reason(verifyDelivery(request(headers), SECRET)), "bad_timestamp");
  });

  test("nothing in a body as Python writes it (microseconds, +00:00, a numeric id)", async () => {
    const text =
      '{"id": 9007199254740991, "task": "t", "args": {}, "attempt": 2, "max_attempts": null,' +
      ' "queue": "q", "correlation_id": "req-1", "created_at": "2026-12-06T06:00:00.123456+00:00"}';
    const delivery = await verifyDelivery(request(await signDelivery(text, SECRET), text), SECRET);
    assert.equal(delivery.id, "9007199254740991");
    assert.equal(delivery.attempt, 2);
    assert.equal(delivery.maxAttempts, null);
    assert.equal(delivery.correlationId, "req-1");
    assert.equal(delivery.createdAt.toISOString(), "2026-12-06T06:00:00.123Z");
  });

  test("an id beyond 2^53 arrives exactly, from the signed webhook-id", async () => {
    const text =
      '{"id":9007199254740993,"task":"t","args":{},"attempt":1,"max_attempts":3,' +
      '"queue":"q","correlation_id":null,"created_at":"2026-12-06T06:00:00+00:00"}';
    const exact = await signDelivery(text, SECRET, { webhookId: "job_9007199254740993" });
    const delivery = await verifyDelivery(request(exact, text), SECRET);
    assert.equal(delivery.id, "9007199254740993");
    // a webhook-id naming another job does not lend its id
    const other = await signDelivery(text, SECRET, { webhookId: "job_12" });
    assert.equal(await reason(verifyDelivery(request(other, text), SECRET)), "bad_body");
  });

  test("a signed body that is not a delivery", async () => {
    const text = JSON.stringify({ hello: "world" });
    const headers = await signDelivery(text, SECRET);
    assert.equal(await reason(verifyDelivery(request(headers, text), SECRET)), "bad_body");
  });

  test("a signature of another version, or not base64", async () => {
    const good = await signDelivery(body, SECRET);
    const other = good["webhook-signature"].replace("v1,", "v1a,");
    for (const signature of [other, "v1,%%%", "v1", ""]) {
      const headers = { ...good, "webhook-signature": signature };
      const expected = signature === "" ? "missing_header" : "bad_signature";
      assert.equal(await reason(verifyDelivery(request(headers), SECRET)), expected);
    }
  });

  test("a body already read (it needs the raw bytes)", async () => {
    const incoming = request(await signDelivery(body, SECRET));
    await incoming.text();
    await assert.rejects(verifyDelivery(incoming, SECRET), /already read/);
  });

  test("no secret at all (a configuration error, not a 401)", async () => {
    const incoming = request(await signDelivery(body, SECRET));
    await assert.rejects(verifyDelivery(incoming, ["", " "]), /no signing secret/);
  });
});

describe("constant-time comparison", () => {
  test("every (signature, secret) pair goes through the constant-time compare, no early exit", () => {
    const macs = [new Uint8Array(32).fill(1), new Uint8Array(32).fill(2)];
    const encode = (bytes: Uint8Array) => `v1,${Buffer.from(bytes).toString("base64")}`;
    const header = [encode(macs[0]!), encode(new Uint8Array(32).fill(9)), "v1a,ignored"].join(" ");
    const calls: Array<[number, number]> = [];
    const matched = anySignatureMatches(macs, header, (a, b) => {
      calls.push([a[0]!, b[0]!]);
      return timingSafeEqual(a, b);
    });
    assert.equal(matched, true);
    // the first pair matched, and the three others were still compared
    assert.deepEqual(calls, [[1, 1], [1, 2], [9, 1], [9, 2]]);
  });

  test("timingSafeEqual compares whole byte strings", () => {
    const a = new Uint8Array([1, 2, 3, 4]);
    assert.equal(timingSafeEqual(a, new Uint8Array([1, 2, 3, 4])), true);
    assert.equal(timingSafeEqual(a, new Uint8Array([1, 2, 3, 5])), false);
    assert.equal(timingSafeEqual(a, new Uint8Array([0, 2, 3, 4])), false);
    assert.equal(timingSafeEqual(a, new Uint8Array([1, 2, 3])), false);
  });
});
