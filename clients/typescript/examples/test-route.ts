// Test a delivery route without Conveyor: deliveryRequest builds a signed POST, as Conveyor
// would send it, and the route handler is called with it directly.
import { deliveryRequest } from "@conveyor/client";

import { POST } from "./app/api/send-receipt/route.js";

export async function receiptRouteAnswers(secret: string): Promise<number> {
  const request = await deliveryRequest(
    "http://localhost/api/send-receipt",
    { task: "send-receipt", args: { order_id: 42 }, queue: "emails" },
    secret,
  );
  const response = await POST(request);
  return response.status; // 200
}
