import assert from "node:assert/strict";
import { describe, test } from "node:test";

import {
  Cancel,
  deliveryHandler,
  deliveryRequest,
  FailNow,
  type HandlerResult,
  Retry,
} from "@conveyor/client";

const SECRET = "whsec_" + Buffer.from("a handler test secret of 32 byte").toString("base64");
const URL = "http://localhost/api/job";
const job = { id: "12", task: "job", args: { n: 1 } };

async function answer(fn: () => HandlerResult | Promise<HandlerResult>, request?: Request) {
  const errors: unknown[] = [];
  const handler = deliveryHandler(fn, { secrets: SECRET, onError: (error) => errors.push(error) });
  const response = await handler(request ?? (await deliveryRequest(URL, job, SECRET)));
  const text = await response.text();
  return { status: response.status, headers: response.headers, text, errors };
}

describe("deliveryHandler maps outcomes to the statuses Conveyor reads", () => {
  test("a returned value: 200 with it as JSON (the job's result)", async () => {
    const { status, text, headers } = await answer(() => ({ sent: true, n: 1 }));
    assert.equal(status, 200);
    assert.deepEqual(JSON.parse(text), { sent: true, n: 1 });
    assert.equal(headers.get("content-type"), "application/json");
  });

  test("nothing returned: 200 with null", async () => {
    const { status, text } = await answer(() => undefined);
    assert.equal(status, 200);
    assert.equal(text, "null");
  });

  test("a Response is passed through", async () => {
    const { status, text } = await answer(() => new Response("accepted", { status: 202 }));
    assert.deepEqual([status, text], [202, "accepted"]);
  });

  test("Retry(after): 503 with Retry-After in whole seconds", async () => {
    const late = await answer(() => {
      throw new Retry(2.5, "busy");
    });
    assert.equal(late.status, 503);
    assert.equal(late.headers.get("retry-after"), "3");
    assert.deepEqual(JSON.parse(late.text), { outcome: "retry", message: "busy" });
    const backoff = await answer(() => {
      throw new Retry();
    });
    assert.equal(backoff.status, 503);
    assert.equal(backoff.headers.get("retry-after"), null); // the job's backoff decides
  });

  test("Retry(at a time): Retry-After counts the seconds until then", async () => {
    const now = new Date("2026-12-06T06:00:00Z");
    const handler = deliveryHandler(
      () => {
        throw new Retry(new Date("2026-12-06T06:01:30Z"));
      },
      { secrets: SECRET, now },
    );
    const response = await handler(await deliveryRequest(URL, job, SECRET, { timestamp: now }));
    assert.equal(response.headers.get("retry-after"), "90");
  });

  test("Cancel: 410", async () => {
    const { status } = await answer(() => {
      throw new Cancel("order gone");
    });
    assert.equal(status, 410);
  });

  test("FailNow: 422 (a 4xx other than 410 and 429: failed at once)", async () => {
    const { status } = await answer(() => {
      throw new FailNow("bad order");
    });
    assert.equal(status, 422);
  });

  test("an unexpected error: 500 (retried with backoff), reported to onError", async () => {
    const { status, text, errors } = await answer(() => {
      throw new TypeError("boom");
    });
    assert.equal(status, 500);
    assert.deepEqual(JSON.parse(text), { error: "exception", type: "TypeError", message: "boom" });
    assert.equal(errors.length, 1);
  });

  test("a forged request: 401, and the function never runs", async () => {
    let ran = false;
    const forged = await deliveryRequest(URL, job, "whsec_" + btoa("not the endpoint secret!"));
    const { status, text } = await answer(() => {
      ran = true;
    }, forged);
    assert.equal(status, 401);
    assert.equal(JSON.parse(text).error, "bad_signature");
    assert.equal(ran, false);
  });

  test("a replayed request: 401", async () => {
    const old = await deliveryRequest(URL, job, SECRET, { timestamp: new Date(Date.now() - 600_000) });
    const { status, text } = await answer(() => null, old);
    assert.equal(status, 401);
    assert.equal(JSON.parse(text).error, "timestamp_too_old");
  });

  test("no secret configured: 500 (a configuration error, not a forgery)", async () => {
    const handler = deliveryHandler(() => null, { secrets: () => "", onError: () => {} });
    const response = await handler(await deliveryRequest(URL, job, SECRET));
    assert.equal(response.status, 500);
  });
});
