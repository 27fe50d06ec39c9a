// app/api/cron/cleanup/route.ts: a protected cron route. A stored schedule
// (`conveyor cron add cleanup.minutely "* * * * *" --endpoint cleanup`) enqueues one job per
// time, and Conveyor POSTs it here signed; anything unsigned, forged or replayed gets a 401.
import { type Delivery, DeliveryVerificationError, verifyDelivery } from "@conveyor/client";

import { conveyorSecrets, db } from "../../../../lib/db";

export async function POST(request: Request): Promise<Response> {
  let delivery: Delivery;
  try {
    delivery = await verifyDelivery(request, conveyorSecrets());
  } catch (error) {
    if (error instanceof DeliveryVerificationError) {
      return Response.json({ error: error.reason }, { status: 401 });
    }
    throw error; // no secret configured: a 500 (retried), never a 200
  }
  // A cron job has no arguments; its unique key, `cron:<schedule>@<time in UTC>`, names the
  // schedule's time it was enqueued for (conveyor.jobs is Conveyor's public view of jobs).
  const client = await db().connect();
  try {
    await client.query("BEGIN");
    const job = await client.query<{ unique_key: string | null }>(
      "SELECT unique_key FROM conveyor.jobs WHERE id = $1",
      [delivery.id],
    );
    const key = /^cron:(.+)@([^@]+)$/.exec(job.rows[0]?.unique_key ?? "");
    const schedule = key?.[1] ?? null;
    const slot = key?.[2] ?? null;
    // the work: drop old bookkeeping rows; record this run once per webhook-id
    const deleted = await client.query(
      "DELETE FROM shop.cron_runs WHERE ran_at < now() - interval '7 days'",
    );
    await client.query(
      `INSERT INTO shop.cron_runs (webhook_id, job_id, schedule, slot) VALUES ($1, $2, $3, $4)
       ON CONFLICT (webhook_id) DO NOTHING`,
      [delivery.webhookId, delivery.id, schedule, slot],
    );
    await client.query("COMMIT");
    return Response.json({ schedule, slot, deleted: deleted.rowCount }); // the job's result
  } catch (error) {
    await client.query("ROLLBACK");
    throw error;
  } finally {
    client.release();
  }
}
