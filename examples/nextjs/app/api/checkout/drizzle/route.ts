// app/api/checkout/drizzle/route.ts: the same checkout with Drizzle. enqueueSql builds the
// checked `SELECT conveyor.enqueue(...)` with Drizzle's `sql` tag, run with tx.execute() inside
// db.transaction(): an error thrown in the callback rolls back the order and its job.
import { enqueueSql } from "@conveyor/client";
import { sql } from "drizzle-orm";
import { drizzle } from "drizzle-orm/node-postgres";

import { db } from "../../../../lib/db";
import { declined, PaymentDeclined, readOrder } from "../../../../lib/orders";

export async function POST(request: Request): Promise<Response> {
  const order = await readOrder(request);
  if (order instanceof Response) return order; // 400

  let jobId: string | undefined;
  try {
    const orderId = await drizzle(db()).transaction(async (tx) => {
      const { rows } = await tx.execute<{ id: string }>(
        sql`INSERT INTO shop.orders (email, amount)
            VALUES (${order.email}, ${order.amount}) RETURNING id`,
      );
      const orderId = rows[0]!.id;
      const job = await tx.execute<{ id: string }>(
        enqueueSql(sql, "send-receipt", { orderId: Number(orderId) }, {
          correlationId: `order-${orderId}`,
        }),
      );
      jobId = job.rows[0]!.id;
      if (order.fail) throw new PaymentDeclined(); // Drizzle rolls back, then rethrows
      return orderId;
    });
    return Response.json({ orderId, jobId }, { status: 201 });
  } catch (error) {
    if (error instanceof PaymentDeclined) return declined(jobId);
    throw error;
  }
}
