// Enqueue Conveyor jobs from Node.js with node-postgres, inside the app's own transaction.
// Usage: DATABASE_URL=postgresql://... node enqueue.mjs
import pg from "pg";

const client = new pg.Client({ connectionString: process.env.DATABASE_URL });
await client.connect();
try {
  // Committed: the order and its receipt job exist together.
  await client.query("BEGIN");
  const kept = await client.query(
    "SELECT conveyor.enqueue($1, $2::jsonb) AS id",
    ["shop.send_receipt", JSON.stringify({ order_id: 42 })],
  );
  await client.query("COMMIT");

  // Rolled back: no job is left behind.
  await client.query("BEGIN");
  const dropped = await client.query(
    "SELECT conveyor.enqueue($1, $2::jsonb, queue => $3) AS id",
    ["shop.send_receipt", JSON.stringify({ order_id: 43 }), "emails"],
  );
  await client.query("ROLLBACK");

  console.log(JSON.stringify({ committed: Number(kept.rows[0].id), rolled_back: Number(dropped.rows[0].id) }));
} finally {
  await client.end();
}
