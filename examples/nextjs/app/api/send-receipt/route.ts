// app/api/send-receipt/route.ts: the endpoint `send-receipt`, to which Conveyor POSTs the jobs
// that /api/checkout enqueues. deliveryHandler verifies the signature (401 when it does not
// verify or is older than 5 minutes), runs the function and answers with the status that tells
// Conveyor what to do with the job: 200 completes it, Cancel → 410, an exception → 500 (retry).
import { Cancel, deliveryHandler } from "@conveyor/client";

import { conveyorSecrets, db } from "../../../lib/db";

export const POST = deliveryHandler<{ orderId: number }>(
  async (delivery) => {
    // A delivery arrives a second time, with the same webhook-id, only if the delivering worker
    // died between our answer and recording it: the primary key on webhook_id makes the second
    // insert a no-op. (A real shop would record the id in the same transaction as the e-mail
    // provider's idempotency key.)
    const { rows } = await db().query<{ email: string; inserted: boolean }>(
      `WITH o AS (SELECT id, email FROM shop.orders WHERE id = $2),
            ins AS (INSERT INTO shop.receipts (webhook_id, order_id, job_id, attempt)
                    SELECT $1, o.id, $3, $4 FROM o
                    ON CONFLICT (webhook_id) DO NOTHING
                    RETURNING order_id)
       SELECT o.email, EXISTS (SELECT 1 FROM ins) AS inserted FROM o`,
      [delivery.webhookId, delivery.args.orderId, delivery.id, delivery.attempt],
    );
    const order = rows[0];
    if (order === undefined) throw new Cancel(`order ${delivery.args.orderId} does not exist`);
    // stored as the job's result (`conveyor jobs show ID`)
    return { orderId: delivery.args.orderId, sentTo: order.email, duplicate: !order.inserted };
  },
  // Read per request, so `next build` works where the secret is not set.
  { secrets: conveyorSecrets },
);
