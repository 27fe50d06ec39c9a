// Enqueue with Drizzle: the call is plain SQL, run with tx.execute() inside db.transaction().
import { sql } from "drizzle-orm";
import type { NodePgDatabase } from "drizzle-orm/node-postgres";
import { enqueueSql } from "@conveyor/client";

export async function placeOrder(
  db: NodePgDatabase,
  email: string,
): Promise<{ orderId: string; jobId: string }> {
  return db.transaction(async (tx) => {
    const order = await tx.execute<{ id: string }>(
      sql`INSERT INTO orders (email) VALUES (${email}) RETURNING id`,
    );
    const orderId = order.rows[0]!.id;
    // enqueueSql checks the arguments and options, then builds the call with Drizzle's `sql`
    const job = await tx.execute<{ id: string }>(
      enqueueSql(sql, "send-receipt", { order_id: Number(orderId) }, { queue: "emails" }),
    );
    return { orderId, jobId: job.rows[0]!.id };
  });
}

// The same call written by hand: bind the arguments as JSON text and cast them to jsonb.
export async function enqueueByHand(db: NodePgDatabase, orderId: number): Promise<string> {
  const args = JSON.stringify({ order_id: orderId });
  const { rows } = await db.execute<{ id: string }>(
    sql`SELECT conveyor.enqueue('send-receipt', ${args}::jsonb, queue => 'emails') AS id`,
  );
  return rows[0]!.id;
}
