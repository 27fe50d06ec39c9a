// Enqueue Conveyor jobs from Node.js with node-postgres, inside the app's own transaction:
// conveyor.enqueue() is a plain SQL function, so the job commits or rolls back with your writes.
//
// Usage: DATABASE_URL=postgresql://... node enqueue.mjs [TASK] [ARGS_JSON]
// Prints {"committed": <id>, "rolled_back": <id>}; only the committed job exists afterwards.
import pg from "pg";

const [task = "shop.send_receipt", args = '{"order_id": 42}'] = process.argv.slice(2);
if (!process.env.DATABASE_URL) {
  console.error("set DATABASE_URL to the database that holds the conveyor schema");
  process.exit(2);
}

const client = new pg.Client({ connectionString: process.env.DATABASE_URL });
await client.connect();
try {
  // Committed: in a real app, the order row and its receipt job commit together.
  await client.query("BEGIN");
  const committed = await enqueue(task, args);
  await client.query("COMMIT");

  // Rolled back (say, the payment was declined): no job is left behind, no worker wakes up.
  await client.query("BEGIN");
  const rolledBack = await enqueue(task, args);
  await client.query("ROLLBACK");

  console.log(JSON.stringify({ committed, rolled_back: rolledBack }));
} finally {
  await client.end();
}

async function enqueue(taskName, argsJson) {
  const { rows } = await client.query("SELECT conveyor.enqueue($1, $2::jsonb) AS id", [
    taskName,
    argsJson,
  ]);
  return Number(rows[0].id); // bigint arrives as a string; job ids fit in a double
}
