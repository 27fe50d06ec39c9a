// Enqueue with node-postgres: the order and its receipt job commit together, or neither does.
import type pg from "pg";
import { enqueue } from "@conveyor/client";

export async function placeOrder(
  client: pg.PoolClient | pg.Client,
  email: string,
): Promise<{ orderId: string; jobId: string }> {
  await client.query("BEGIN");
  try {
    const order = await client.query<{ id: string }>(
      "INSERT INTO orders (email) VALUES ($1) RETURNING id",
      [email],
    );
    const orderId = order.rows[0]!.id; // bigint columns arrive as strings
    const jobId = await enqueue(
      client,
      "send-receipt",
      { order_id: Number(orderId) },
      { queue: "emails", correlationId: `order-${orderId}` },
    );
    await client.query("COMMIT"); // the job becomes visible (and a worker wakes) only now
    return { orderId, jobId };
  } catch (error) {
    await client.query("ROLLBACK"); // the order and the job are both gone
    throw error;
  }
}
