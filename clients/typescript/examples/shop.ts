// A stand-in for the shop's own code, so the examples run in the tests.
export interface Order {
  id: number;
  email: string;
}

export const orders = new Map<number, Order>([[42, { id: 42, email: "ada@example.com" }]]);
export const receiptsSent = new Map<string, Order>(); // by webhook id: a redelivery is a no-op
export let mailServerBusy = false;

export function setMailServerBusy(busy: boolean): void {
  mailServerBusy = busy;
}

export async function findOrder(id: number): Promise<Order | undefined> {
  return orders.get(id);
}

export async function sendReceipt(
  order: Order,
  webhookId: string,
): Promise<{ ok: true } | { ok: false; retryAfterSeconds: number }> {
  if (mailServerBusy) return { ok: false, retryAfterSeconds: 30 };
  receiptsSent.set(webhookId, order);
  return { ok: true };
}
