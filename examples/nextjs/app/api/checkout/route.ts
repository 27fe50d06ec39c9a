// app/api/checkout/route.ts: place an order and enqueue its receipt job in ONE node-postgres
// transaction. The job becomes visible to Conveyor only at COMMIT; on ROLLBACK it is gone
// with the order, and no worker was woken.
import { enqueue, startWorkflow } from "@conveyor/client";

import { db } from "../../../lib/db";
import { declined, PaymentDeclined, readOrder } from "../../../lib/orders";

/** Orders from this many cents on wait for a manager's approval. */
const APPROVAL_FROM = 100_000;

export async function POST(request: Request): Promise<Response> {
  const order = await readOrder(request);
  if (order instanceof Response) return order; // 400

  const client = await db().connect(); // a transaction needs one client, not the pool
  let jobId: string | undefined;
  try {
    await client.query("BEGIN");
    const { rows } = await client.query<{ id: string }>(
      "INSERT INTO shop.orders (email, amount) VALUES ($1, $2) RETURNING id",
      [order.email, order.amount],
    );
    const orderId = rows[0]!.id; // bigint columns arrive as strings
    jobId = await enqueue(
      client,
      "send-receipt", // the endpoint's name: `conveyor endpoint add send-receipt ...`
      { orderId: Number(orderId) },
      { correlationId: `order-${orderId}` },
    );
    // a large order also starts its approval workflow (Python, waiting for a manager's click:
    // app/api/approvals), in the same transaction; its run id makes a retried request safe
    let approvalRunId: string | undefined;
    if (order.amount >= APPROVAL_FROM) {
      approvalRunId = await startWorkflow(
        client,
        "order.approval",
        { orderId: Number(orderId) },
        { runId: `approval-${orderId}` },
      );
    }
    if (order.fail) throw new PaymentDeclined(); // after the enqueue: the rollback takes all
    await client.query("COMMIT");
    return Response.json({ orderId, jobId, approvalRunId }, { status: 201 });
  } catch (error) {
    await client.query("ROLLBACK");
    if (error instanceof PaymentDeclined) return declined(jobId);
    throw error;
  } finally {
    client.release();
  }
}
