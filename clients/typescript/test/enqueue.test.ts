import assert from "node:assert/strict";
import { after, afterEach, before, describe, test } from "node:test";

import { sql } from "drizzle-orm";
import { drizzle } from "drizzle-orm/node-postgres";
import pg from "pg";

import {
  enqueue,
  enqueueMany,
  EnqueueOptionError,
  enqueueSql,
  PayloadError,
} from "@conveyor/client";
import { enqueueByHand, placeOrder as placeOrderDrizzle } from "../examples/enqueue-drizzle.js";
import { placeOrder } from "../examples/enqueue-pg.js";

const url = process.env.CONVEYOR_DATABASE_URL;
const skip = url
  ? false
  : "CONVEYOR_DATABASE_URL is not set: set it to a database migrated with `conveyor migrate`" +
    " to run the enqueue tests against Postgres";

// Unique keys of this run: the database may hold jobs of earlier runs.
const run = Math.random().toString(36).slice(2, 10);

interface JobRow {
  id: string;
  task: string;
  args: unknown;
  queue: string;
  state: string;
  priority: number;
  unique_key: string | null;
  correlation_id: string | null;
  delay: number;
}

describe("enqueue against a real Postgres", { skip }, () => {
  let client: pg.Client;
  let other: pg.Client; // a second session: sees only what is committed

  before(async () => {
    client = new pg.Client({ connectionString: url });
    other = new pg.Client({ connectionString: url });
    await client.connect();
    await other.connect();
    // The examples' orders table, private to this session.
    await client.query(
      "CREATE TEMP TABLE orders (id bigserial PRIMARY KEY, email text NOT NULL CHECK (email LIKE '%@%'))",
    );
  });

  afterEach(async () => {
    await client.query("ROLLBACK"); // a failed test must not leave its transaction open
  });

  after(async () => {
    await client?.end();
    await other?.end();
  });

  async function jobs(where = "true", values: unknown[] = []): Promise<JobRow[]> {
    const { rows } = await other.query<JobRow>(
      `SELECT id::text, task, args, queue, state, priority, unique_key, correlation_id,
              round(extract(epoch FROM run_at - created_at))::int AS delay
         FROM conveyor.jobs WHERE ${where} ORDER BY jobs.id`,
      values,
    );
    return rows;
  }

  test("commit makes exactly one job, with every option", async () => {
    await client.query("BEGIN");
    const id = await enqueue(client, "send-receipt", { order_id: 1 }, {
      queue: "emails",
      priority: 5,
      delay: 600,
      uniqueKey: `ts-receipt-${run}`,
      correlationId: "req-1",
    });
    assert.match(id, /^\d+$/);
    assert.deepEqual(await jobs("id = $1", [id]), []); // invisible before COMMIT
    await client.query("COMMIT");
    assert.deepEqual(await jobs("id = $1", [id]), [
      {
        id,
        task: "send-receipt",
        args: { order_id: 1 },
        queue: "emails",
        state: "scheduled",
        priority: 5,
        unique_key: `ts-receipt-${run}`,
        correlation_id: "req-1",
        delay: 600,
      },
    ]);
    // the same unique key returns the same job, and inserts none
    assert.equal(await enqueue(client, "send-receipt", { order_id: 1 }, { uniqueKey: `ts-receipt-${run}` }), id);
    assert.equal((await jobs("unique_key = $1", [`ts-receipt-${run}`])).length, 1);
  });

  test("rollback leaves no job", async () => {
    await client.query("BEGIN");
    const id = await enqueue(client, "send-receipt", { order_id: 2 });
    await client.query("ROLLBACK");
    assert.deepEqual(await jobs("id = $1", [id]), []);
  });

  test("runAt: a future time schedules, a past one is available now", async () => {
    const later = await enqueue(client, "t", {}, { runAt: new Date(Date.now() + 3_600_000) });
    const now = await enqueue(client, "t", {}, { runAt: "2020-01-01T00:00:00Z" });
    const states = (await jobs("id = ANY($1::bigint[])", [[later, now]])).map((job) => job.state);
    assert.deepEqual(states, ["scheduled", "available"]);
  });

  test("bad args are refused before the database", async () => {
    const counting = {
      calls: 0,
      async query(): Promise<{ rows: unknown[] }> {
        this.calls++;
        return { rows: [{ id: "1" }] };
      },
    };
    await assert.rejects(enqueue(counting, "t", { at: new Date() }), PayloadError);
    await assert.rejects(enqueue(counting, "t", { n: 1n }), PayloadError);
    await assert.rejects(enqueue(counting, "t", { n: 1 }, { priority: 1.5 }), EnqueueOptionError);
    await assert.rejects(
      enqueue(counting, "t", { n: 1 }, { maxAttempts: 3 } as never),
      /takes no max_attempts/,
    );
    await assert.rejects(enqueue(counting, "t", { n: 1 }, { delay: 1, runAt: new Date() }), /both/);
    await assert.rejects(enqueue(counting, "t", { n: 1 }, { runAt: "tomorrow" }), /valid time/);
    assert.equal(counting.calls, 0);
  });

  test("encodeArgs draws the nesting limit where the SQL function does", async () => {
    // {"deep": [[...[1]...]]} with the 1 at level `depth`
    const nested = (depth: number) => ({ deep: JSON.parse("[".repeat(depth - 1) + "1" + "]".repeat(depth - 1)) });
    const id = await enqueue(client, "t", nested(100));
    assert.equal((await jobs("id = $1", [id])).length, 1);
    await assert.rejects(enqueue(client, "t", nested(101)), PayloadError);
    await assert.rejects(
      client.query("SELECT conveyor.enqueue('t', $1::jsonb)", [JSON.stringify(nested(101))]),
      /nested deeper than 100 levels/,
    );
  });

  test("enqueueMany: one statement, ids in the order given, in the caller's transaction", async () => {
    await client.query("BEGIN");
    const ids = await enqueueMany(client, [
      { task: "a", args: { n: 1 }, queue: "q1" },
      { task: "b", args: { n: 2 }, delay: 60, priority: 3 },
      { task: "c", correlationId: "req-9", uniqueKey: `ts-many-${run}` },
      { task: "d", runAt: new Date(Date.now() + 3_600_000) },
    ]);
    assert.equal(ids.length, 4);
    await client.query("COMMIT");
    const rows = await jobs("id = ANY($1::bigint[])", [ids]);
    const byId = new Map(rows.map((row) => [row.id, row]));
    const got = ids.map((id) => byId.get(id));
    assert.deepEqual(
      got.map((job) => [job?.task, job?.args, job?.queue, job?.state, job?.priority]),
      [
        ["a", { n: 1 }, "q1", "available", 0],
        ["b", { n: 2 }, "default", "scheduled", 3],
        ["c", {}, "default", "available", 0],
        ["d", {}, "default", "scheduled", 0],
      ],
    );
    assert.equal(got[1]?.delay, 60);
    assert.equal(got[2]?.correlation_id, "req-9");
    assert.deepEqual(await enqueueMany(client, []), []);
  });

  test("the node-postgres example: the order and its job commit together, or neither", async () => {
    const { orderId, jobId } = await placeOrder(client, "ada@example.com");
    const [job] = await jobs("id = $1", [jobId]);
    assert.deepEqual([job?.task, job?.args, job?.queue], ["send-receipt", { order_id: Number(orderId) }, "emails"]);
    const before = (await jobs()).length;
    await assert.rejects(placeOrder(client, "not an email"), /check constraint/);
    assert.equal((await jobs()).length, before);
  });

  test("the Drizzle example: enqueueSql and the hand-written call, in db.transaction", async () => {
    const db = drizzle(client);
    const { orderId, jobId } = await placeOrderDrizzle(db, "grace@example.com");
    const [job] = await jobs("id = $1", [jobId]);
    assert.deepEqual([job?.task, job?.args, job?.queue], ["send-receipt", { order_id: Number(orderId) }, "emails"]);
    const byHand = await enqueueByHand(db, 7);
    assert.deepEqual((await jobs("id = $1", [byHand]))[0]?.args, { order_id: 7 });
    // a rolled-back Drizzle transaction leaves no job
    let rolledBack = "";
    await assert.rejects(
      db.transaction(async (tx) => {
        const { rows } = await tx.execute<{ id: string }>(enqueueSql(sql, "t", { n: 1 }));
        rolledBack = rows[0]!.id;
        throw new Error("payment declined");
      }),
      /payment declined/,
    );
    assert.match(rolledBack, /^\d+$/);
    assert.deepEqual(await jobs("id = $1", [rolledBack]), []);
  });

  test("a pg.Pool and its PoolClient are accepted too", async () => {
    const pool = new pg.Pool({ connectionString: url, max: 1 });
    try {
      const id = await enqueue(pool, "t", {});
      const poolClient = await pool.connect();
      try {
        assert.equal((await jobs("id = $1", [await enqueue(poolClient, "t", {})])).length, 1);
      } finally {
        poolClient.release();
      }
      assert.equal((await jobs("id = $1", [id])).length, 1);
    } finally {
      await pool.end();
    }
  });
});
