import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { ConveyorHttp, ConveyorHttpError, EnqueueOptionError } from "@conveyor/client";

// Set by tests/acceptance/test_typescript_client.py: a real `conveyor api` on Postgres.
const baseUrl = process.env.CONVEYOR_API_URL;
const tokens = {
  enqueue: process.env.CONVEYOR_API_ENQUEUE_TOKEN ?? "",
  read: process.env.CONVEYOR_API_READ_TOKEN ?? "",
  admin: process.env.CONVEYOR_API_ADMIN_TOKEN ?? "",
};
const skip = baseUrl
  ? false
  : "CONVEYOR_API_URL is not set: run `conveyor api` and set it (with CONVEYOR_API_*_TOKEN)" +
    " to run the HTTP tests";
const run = Math.random().toString(36).slice(2, 10);

describe("ConveyorHttp against a real conveyor api", { skip }, () => {
  const url = baseUrl ?? "http://127.0.0.1:1";
  const enqueuer = new ConveyorHttp({ baseUrl: url, token: tokens.enqueue });
  const reader = new ConveyorHttp({ baseUrl: url, token: tokens.read });
  const admin = new ConveyorHttp({ baseUrl: `${url}/`, token: tokens.admin });

  test("http enqueue then getJob", async () => {
    const id = await enqueuer.enqueue(
      "send-receipt",
      { order: 42, name: "Zoë" },
      { queue: "mail", priority: 5, uniqueKey: `receipt-${run}`, requestId: `req-${run}` },
    );
    assert.match(id, /^[1-9][0-9]*$/);
    const job = await reader.getJob(id);
    assert.equal(job.task, "send-receipt");
    assert.equal(job.queue, "mail");
    assert.equal(job.priority, 5);
    assert.deepEqual(job.args, { order: 42, name: "Zoë" });
    assert.equal(job.correlation_id, `req-${run}`);
    assert.equal(job.state, "available");
    // the unique key returns the same job
    assert.equal(await enqueuer.enqueue("send-receipt", {}, { uniqueKey: `receipt-${run}` }), id);
  });

  test("http idempotency key returns the first job", async () => {
    const key = `idem-${run}`;
    const first = await enqueuer.enqueue("t", { n: 1 }, { idempotencyKey: key, delay: 60 });
    const again = await enqueuer.enqueue("t", { n: 1 }, { idempotencyKey: key, delay: 60 });
    assert.equal(again, first);
    assert.equal((await reader.getJob(first)).state, "scheduled");
  });

  test("http enqueueMany, startWorkflow and sendEvent", async () => {
    const ids = await enqueuer.enqueueMany([{ task: "a" }, { task: "b", args: { x: 1 } }]);
    assert.equal(ids.length, 2);
    const runId = await enqueuer.startWorkflow("checkout", { order: 7 }, { runId: `run-${run}` });
    assert.equal(runId, `run-${run}`);
    assert.equal(await enqueuer.startWorkflow("checkout", { order: 7 }, { runId }), runId);
    const eventId = await enqueuer.sendEvent("approved", runId, { by: "ann" });
    assert.match(eventId, /^[1-9][0-9]*$/);
  });

  test("http refusals carry the problem document", async () => {
    await assert.rejects(reader.enqueue("t"), (error: unknown) => {
      assert.ok(error instanceof ConveyorHttpError);
      assert.equal(error.status, 403);
      assert.match(error.problem?.detail ?? "", /needs the 'enqueue' scope/);
      return true;
    });
    await assert.rejects(admin.getJob("999999999"), (error: unknown) => {
      assert.ok(error instanceof ConveyorHttpError);
      assert.equal(error.status, 404);
      assert.equal(error.problem?.type, "https://conveyor.dev/problems/not-found");
      return true;
    });
    const anonymous = new ConveyorHttp({ baseUrl: url, token: "cvk_wrong" });
    await assert.rejects(anonymous.getJob(1), { status: 401 });
  });
});

describe("ConveyorHttp checks before sending", () => {
  const client = new ConveyorHttp({ baseUrl: "http://127.0.0.1:1", token: "t" });

  test("an unknown option is refused", async () => {
    const options = { queu: "mail" } as unknown as { queue: string };
    await assert.rejects(client.enqueue("t", {}, options), EnqueueOptionError);
  });

  test("a base URL must be http(s)", () => {
    assert.throws(() => new ConveyorHttp({ baseUrl: "localhost:8081" }), /baseUrl/);
  });
});
