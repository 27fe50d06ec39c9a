// Enqueue Conveyor jobs from Node.js with node-postgres, inside the app's own transaction:
// conveyor.enqueue() is a plain SQL function, so the job commits or rolls back with your writes.
//
// Usage: CONVEYOR_DATABASE_URL=postgresql://... node enqueue.mjs [TASK] [ARGS_JSON] [QUEUE]
// Prints {"committed": <id>, "rolled_back": <id>}; only the committed job exists afterwards.
//
// Pass the queue the task is declared on (@app.task(queue=...)): SQL cannot see the Python
// declaration, so without `queue =>` the job waits in 'default', where a worker serving only
// the task's queue never claims it.
import pg from "pg";

const [task = "shop.send_receipt", args = '{"order_id": 42}', queue = "emails"] =
  process.argv.slice(2);
if (!process.env.CONVEYOR_DATABASE_URL) {
  console.error(
    "set CONVEYOR_DATABASE_URL to the database that holds the conveyor schema" +
      " (the one your workers use)",
  );
  process.exit(2);
}

const client = new pg.Client({ connectionString: process.env.CONVEYOR_DATABASE_URL });
await client.connect();
try {
  // Committed: in a real app, the order row and its receipt job commit together.
  await client.query("BEGIN");
  const committed = await enqueue(task, args, queue);
  await client.query("COMMIT");

  // Rolled back (say, the payment was declined): no job is left behind, no worker wakes up.
  await client.query("BEGIN");
  const rolledBack = await enqueue(task, args, queue);
  await client.query("ROLLBACK");

  console.log(JSON.stringify({ committed, rolled_back: rolledBack }));
} finally {
  await client.end();
}

async function enqueue(taskName, argsJson, queueName) {
  const { rows } = await client.query(
    "SELECT conveyor.enqueue($1, $2::jsonb, queue => $3) AS id",
    [taskName, argsJson, queueName],
  );
  return Number(rows[0].id); // bigint arrives as a string; job ids fit in a double
}
