// The checkout routes' request: `{"email": ..., "amount": cents, "fail"?: true}`.

export interface OrderRequest {
  email: string;
  amount: number;
  /** Stands in for a payment provider that declines after the job was enqueued. */
  fail: boolean;
}

/** The order in the request's body, or a 400 response saying what is wrong with it. */
export async function readOrder(request: Request): Promise<OrderRequest | Response> {
  const body = (await request.json().catch(() => null)) as Record<string, unknown> | null;
  const email = body?.email;
  const amount = body?.amount;
  if (typeof email !== "string" || !email.includes("@")) {
    return Response.json({ error: "email: give an e-mail address" }, { status: 400 });
  }
  if (typeof amount !== "number" || !Number.isInteger(amount) || amount <= 0) {
    return Response.json({ error: "amount: give a positive whole number of cents" }, { status: 400 });
  }
  return { email, amount, fail: body?.fail === true };
}

export class PaymentDeclined extends Error {
  constructor() {
    super("payment declined");
  }
}

/** 402 for a declined order; `jobId` is the id its rolled-back job had drawn. */
export function declined(jobId: string | undefined): Response {
  return Response.json({ error: "payment declined", rolledBackJobId: jobId }, { status: 402 });
}
