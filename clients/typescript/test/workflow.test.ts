import assert from "node:assert/strict";
import { after, afterEach, before, describe, test } from "node:test";

import { sql } from "drizzle-orm";
import { drizzle } from "drizzle-orm/node-postgres";
import pg from "pg";

import {
  EnqueueOptionError,
  PayloadError,
  sendEvent,
  sendEventSql,
  startWorkflow,
  startWorkflowSql,
} from "@conveyor/client";
import { checkout, markShipped } from "../examples/workflow-pg.js";

const url = process.env.CONVEYOR_DATABASE_URL;
const skip = url
  ? false
  : "CONVEYOR_DATABASE_URL is not set: set it to a database migrated with `conveyor migrate`" +
    " to run the workflow tests against Postgres";

// Run ids and event keys of this run: the database may hold rows of earlier runs.
const run = Math.random().toString(36).slice(2, 10);

interface RunRow {
  id: string;
  workflow: string;
  state: string;
  args: unknown;
  queue: string;
  job_task: string | null;
  job_args: unknown;
  job_state: string | null;
  job_priority: number | null;
}

interface EventRow {
  id: string;
  payload: unknown;
  consumed_by_run: string | null;
  kept_days: number;
}

describe("workflows against a real Postgres", { skip }, () => {
  let client: pg.Client;
  let other: pg.Client; // a second session: sees only what is committed

  before(async () => {
    client = new pg.Client({ connectionString: url });
    other = new pg.Client({ connectionString: url });
    await client.connect();
    await other.connect();
    await client.query("CREATE TEMP TABLE orders (id bigint PRIMARY KEY, state text NOT NULL)");
  });

  afterEach(async () => {
    await client.query("ROLLBACK"); // a failed test must not leave its transaction open
  });

  after(async () => {
    await client?.end();
    await other?.end();
  });

  async function runs(id: string): Promise<RunRow[]> {
    const { rows } = await other.query<RunRow>(
      `SELECT r.id, r.workflow, r.state, r.args, r.queue,
              j.task AS job_task, j.args AS job_args, j.state AS job_state,
              j.priority AS job_priority
         FROM conveyor.workflow_runs r LEFT JOIN conveyor.job j ON j.id = r.job_id
        WHERE r.id = $1`,
      [id],
    );
    return rows;
  }

  async function events(key: string): Promise<EventRow[]> {
    const { rows } = await other.query<EventRow>(
      `SELECT id::text, payload, consumed_by_run,
              round(extract(epoch FROM expires_at - created_at) / 86400)::int AS kept_days
         FROM conveyor.workflow_events WHERE name = 'order.shipped' AND key = $1 ORDER BY workflow_events.id`,
      [key],
    );
    return rows;
  }

  test("startWorkflow: a run and its job commit together; the same runId starts one run", async () => {
    const runId = `ts-run-${run}`;
    await client.query("BEGIN");
    const id = await startWorkflow(client, "shop.checkout", { order_id: 1 }, { runId, queue: "shop", priority: 3 });
    assert.equal(id, runId);
    assert.deepEqual(await runs(runId), []); // invisible before COMMIT
    await client.query("COMMIT");
    assert.deepEqual(await runs(runId), [
      {
        id: runId,
        workflow: "shop.checkout",
        state: "running",
        args: { order_id: 1 },
        queue: "shop",
        job_task: "shop.checkout",
        job_args: { run_id: runId },
        job_state: "available",
        job_priority: 3,
      },
    ]);
    // a retried request: the same id back, no second run and no second job
    assert.equal(await startWorkflow(client, "shop.checkout", { order_id: 1 }, { runId }), runId);
    const { rows } = await other.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM conveyor.job WHERE task = 'shop.checkout' AND args = $1::jsonb",
      [JSON.stringify({ run_id: runId })],
    );
    assert.equal(rows[0]?.n, 1);
    // without a runId, a fresh UUID
    assert.match(await startWorkflow(client, "shop.checkout", {}), /^[0-9a-f-]{36}$/);
  });

  test("rollback leaves no run and no event", async () => {
    await client.query("BEGIN");
    const runId = await startWorkflow(client, "shop.checkout", { order_id: 2 }, { runId: `ts-rb-${run}` });
    const eventId = await sendEvent(client, "order.shipped", `rb-${run}`, { carrier: "DHL" });
    assert.match(eventId, /^\d+$/);
    await client.query("ROLLBACK");
    assert.deepEqual(await runs(runId), []);
    assert.deepEqual(await events(`rb-${run}`), []);
  });

  test("an event sent before any run waits is kept, unconsumed, for the event retention", async () => {
    const key = `early-${run}`;
    const id = await sendEvent(client, "order.shipped", key, { carrier: "UPS", parcels: [1, 2] });
    assert.deepEqual(await events(key), [
      { id, payload: { carrier: "UPS", parcels: [1, 2] }, consumed_by_run: null, kept_days: 7 },
    ]);
    // any JSON value is a payload; none is {}
    const bare = await sendEvent(client, "order.shipped", key);
    const scalar = await sendEvent(client, "order.shipped", key, "shipped");
    const byId = new Map((await events(key)).map((row) => [row.id, row.payload]));
    assert.deepEqual([byId.get(bare), byId.get(scalar)], [{}, "shipped"]);
  });

  test("an event sent to a waiting run is consumed by it, and the run's job wakes", async () => {
    const runId = await startWorkflow(client, "shop.checkout", { order_id: 3 }, { runId: `ts-wait-${run}` });
    const key = `wait-${run}`;
    // What the engine writes when the run reaches ctx.wait_for_event("order.shipped", key=...)
    // at position 0 and parks: the run waiting, its wait step, its job scheduled for the deadline.
    await other.query(
      `WITH r AS (
         UPDATE conveyor.workflow_runs SET state = 'waiting', wait_event = 'order.shipped',
                wait_key = $2, wait_position = 0, wait_deadline = now() + interval '7 days'
          WHERE id = $1 RETURNING job_id
       ), s AS (
         INSERT INTO conveyor.workflow_steps (run_id, position, name, kind, state, wake_at)
         VALUES ($1, 0, 'order.shipped', 'wait', 'waiting', now() + interval '7 days')
       )
       UPDATE conveyor.job SET state = 'scheduled', run_at = now() + interval '7 days'
        WHERE id = (SELECT job_id FROM r)`,
      [runId, key],
    );
    assert.equal((await runs(runId))[0]?.job_state, "scheduled");
    const eventId = await sendEvent(client, "order.shipped", key, { carrier: "DHL" });
    const [event] = await events(key);
    assert.deepEqual([event?.id, event?.consumed_by_run], [eventId, runId]);
    const [woken] = await runs(runId);
    assert.deepEqual([woken?.state, woken?.job_state], ["running", "available"]);
    const { rows } = await other.query<{ state: string; result: unknown }>(
      "SELECT state, result FROM conveyor.workflow_steps WHERE run_id = $1 AND position = 0",
      [runId],
    );
    assert.deepEqual(rows, [
      { state: "completed", result: { event_id: Number(eventId), payload: { carrier: "DHL" } } },
    ]);
    // a second event finds no waiter and is kept for the next wait
    await sendEvent(client, "order.shipped", key, { carrier: "DHL", again: true });
    assert.deepEqual((await events(key)).map((row) => row.consumed_by_run), [runId, null]);
  });

  test("bad input is refused before the database", async () => {
    const counting = {
      calls: 0,
      async query(): Promise<{ rows: unknown[] }> {
        this.calls++;
        return { rows: [{ id: "1" }] };
      },
    };
    await assert.rejects(startWorkflow(counting, "w", { at: new Date() }), PayloadError);
    await assert.rejects(startWorkflow(counting, "w", [1] as never), /plain object/);
    await assert.rejects(startWorkflow(counting, "", {}), EnqueueOptionError);
    await assert.rejects(startWorkflow(counting, "w", {}, { priority: 0.5 }), /priority must be an integer/);
    await assert.rejects(startWorkflow(counting, "w", {}, { runId: "x".repeat(201) }), /runId must be 1 to 200 bytes/);
    await assert.rejects(startWorkflow(counting, "w", {}, { runID: "a" } as never), /unknown startWorkflow option 'runID'/);
    await assert.rejects(sendEvent(counting, "e", "k", { n: 1n }), /payload\.n is a BigInt/);
    await assert.rejects(sendEvent(counting, "e", "k", Symbol("x") as never), PayloadError);
    await assert.rejects(sendEvent(counting, "e", "k\u0000", {}), /key must be/);
    await assert.rejects(
      sendEvent(counting, "e", "k", { blob: "x".repeat(70_000) }),
      /payload is 70,011 bytes, over the 65,536-byte limit/,
    );
    assert.equal(counting.calls, 0);
    // the database draws the payload limit at the same place
    await assert.rejects(
      client.query("SELECT conveyor.send_event('e', 'k', $1::jsonb)", [JSON.stringify({ blob: "x".repeat(70_000) })]),
      /over the 64 KiB limit/,
    );
  });

  test("the example: checkout starts one run per order, markShipped sends the event", async () => {
    await client.query("INSERT INTO orders VALUES (42, 'new')");
    const runId = await checkout(client, 42);
    assert.equal(runId, "checkout-42");
    assert.equal(await checkout(client, 42), runId); // retried: same run
    assert.equal((await runs(runId))[0]?.workflow, "shop.checkout");
    const eventId = await markShipped(client, 42, "DHL");
    assert.ok((await events("42")).some((row) => row.id === eventId));
    const { rows } = await client.query<{ state: string }>("SELECT state FROM orders WHERE id = 42");
    assert.equal(rows[0]?.state, "shipped");
  });

  test("Drizzle: startWorkflowSql and sendEventSql in db.transaction, gone on rollback", async () => {
    const db = drizzle(client);
    const runId = `ts-drizzle-${run}`;
    const started = await db.transaction(async (tx) => {
      const { rows } = await tx.execute<{ id: string }>(
        startWorkflowSql(sql, "shop.checkout", { order_id: 5 }, { runId }),
      );
      await tx.execute(sendEventSql(sql, "order.shipped", `drizzle-${run}`, { carrier: "GLS" }));
      return rows[0]!.id;
    });
    assert.equal(started, runId);
    assert.equal((await runs(runId)).length, 1);
    assert.equal((await events(`drizzle-${run}`)).length, 1);
    await assert.rejects(
      db.transaction(async (tx) => {
        await tx.execute(startWorkflowSql(sql, "shop.checkout", {}, { runId: `${runId}-rb` }));
        await tx.execute(sendEventSql(sql, "order.shipped", `drizzle-rb-${run}`));
        throw new Error("payment declined");
      }),
      /payment declined/,
    );
    assert.deepEqual(await runs(`${runId}-rb`), []);
    assert.deepEqual(await events(`drizzle-rb-${run}`), []);
  });
});
