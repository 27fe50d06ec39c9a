// Start a workflow run and send the event it waits for, each with the caller's own writes.
import type pg from "pg";
import { sendEvent, startWorkflow } from "@conveyor/client";

// The order and its checkout run commit together. The run id is derived from the order, so a
// retried request finds the run it started and starts no second one.
export async function checkout(client: pg.PoolClient | pg.Client, orderId: number): Promise<string> {
  await client.query("BEGIN");
  try {
    await client.query("UPDATE orders SET state = 'paid' WHERE id = $1", [orderId]);
    const runId = await startWorkflow(
      client,
      "shop.checkout",
      { order_id: orderId },
      { runId: `checkout-${orderId}` },
    );
    await client.query("COMMIT");
    return runId;
  } catch (error) {
    await client.query("ROLLBACK");
    throw error;
  }
}

// The warehouse says "shipped": the run waiting on ("order.shipped", key) wakes with the
// payload. Sent before the run waits, the event is kept for it (7 days by default).
export async function markShipped(
  client: pg.PoolClient | pg.Client,
  orderId: number,
  carrier: string,
): Promise<string> {
  await client.query("BEGIN");
  try {
    await client.query("UPDATE orders SET state = 'shipped' WHERE id = $1", [orderId]);
    const eventId = await sendEvent(client, "order.shipped", String(orderId), { carrier });
    await client.query("COMMIT");
    return eventId;
  } catch (error) {
    await client.query("ROLLBACK");
    throw error;
  }
}
