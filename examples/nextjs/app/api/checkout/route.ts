// app/api/checkout/route.ts: place an order and enqueue its receipt job in ONE transaction.
// The job becomes visible to Conveyor only at COMMIT; on ROLLBACK it is gone with the order.
import { enqueue } from "@conveyor/client";

import { db } from "../../../lib/db";

class PaymentDeclined extends Error {}

export async function POST(request: Request): Promise<Response> {
  const body = (await request.json().catch(() => null)) as {
    email?: unknown;
    amount?: unknown;
    fail?: unknown;
  } | null;
  const email = body?.email;
  const amount = body?.amount;
  if (typeof email !== "string" || !email.includes("@")) {
    return Response.json({ error: "email: give an e-mail address" }, { status: 400 });
  }
  if (typeof amount !== "number" || !Number.isInteger(amount) || amount <= 0) {
    return Response.json({ error: "amount: give a positive whole number of cents" }, { status: 400 });
  }

  const client = await db().connect();
  let jobId: string | undefined;
  try {
    await client.query("BEGIN");
    const order = await client.query<{ id: string }>(
      "INSERT INTO shop.orders (email, amount) VALUES ($1, $2) RETURNING id",
      [email, amount],
    );
    const orderId = order.rows[0]!.id; // bigint columns arrive as strings
    jobId = await enqueue(
      client,
      "send-receipt", // the endpoint's name: `conveyor endpoint add send-receipt ...`
      { orderId: Number(orderId) },
      { correlationId: `order-${orderId}` },
    );
    // Stands in for a payment provider that declines after the job was enqueued: the
    // ROLLBACK below takes the order and its job with it.
    if (body?.fail === true) throw new PaymentDeclined("payment declined");
    await client.query("COMMIT");
    return Response.json({ orderId, jobId }, { status: 201 });
  } catch (error) {
    await client.query("ROLLBACK");
    if (error instanceof PaymentDeclined) {
      return Response.json({ error: error.message, rolledBackJobId: jobId }, { status: 402 });
    }
    throw error;
  } finally {
    client.release();
  }
}
