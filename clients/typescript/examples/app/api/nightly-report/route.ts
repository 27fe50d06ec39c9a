// app/api/nightly-report/route.ts: verifyDelivery on its own, for a route that shapes its own
// responses (a protected cron route, say). Anything unsigned, forged or replayed gets a 401.
import { type Delivery, DeliveryVerificationError, verifyDelivery } from "@conveyor/client";

export async function POST(request: Request): Promise<Response> {
  const secrets = (process.env.CONVEYOR_SIGNING_SECRETS ?? "").split(" ");
  let delivery: Delivery;
  try {
    delivery = await verifyDelivery(request, secrets);
  } catch (error) {
    if (error instanceof DeliveryVerificationError) {
      return Response.json({ error: error.reason }, { status: 401 });
    }
    throw error; // no secret configured, say: a 500, not a 401
  }
  const report = { job: delivery.id, attempt: delivery.attempt, built_at: new Date().toISOString() };
  return Response.json(report); // 200: the job completes with this as its result
}
