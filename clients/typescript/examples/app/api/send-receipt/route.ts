// app/api/send-receipt/route.ts: the endpoint `send-receipt` that Conveyor POSTs jobs to.
// deliveryHandler verifies the signature, runs the function and answers with the status that
// tells Conveyor what to do with the job (200 completes it; Retry → 503; Cancel → 410).
import { Cancel, deliveryHandler, Retry } from "@conveyor/client";

import { findOrder, sendReceipt } from "../../../shop.js";

export const POST = deliveryHandler<{ order_id: number }>(
  async (delivery) => {
    const order = await findOrder(delivery.args.order_id);
    if (order === undefined) throw new Cancel(`order ${delivery.args.order_id} is gone`);
    // The same webhookId comes again only if Conveyor died before recording our answer:
    // sendReceipt dedupes on it.
    const sent = await sendReceipt(order, delivery.webhookId);
    if (!sent.ok) throw new Retry(sent.retryAfterSeconds, "mail server busy");
    return { sent_to: order.email }; // stored as the job's result
  },
  // The endpoint's secrets, newest first, space-separated (two during a rotation).
  { secrets: () => (process.env.CONVEYOR_SIGNING_SECRETS ?? "").split(" ") },
);
