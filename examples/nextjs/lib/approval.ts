// Signed approval links: `?order=42&decision=approve&expires=<unix s>&sig=<hex>`, where sig is
// HMAC-SHA256(APPROVAL_SECRET, "42.approve.<expires>"). Whoever sends the e-mail (here: the
// Python workflow's "ask" step) signs the same way.
import { createHmac, timingSafeEqual } from "node:crypto";

export type Decision = "approve" | "reject";

export interface Approval {
  order: string;
  decision: Decision;
}

export function approvalSecret(): string {
  const secret = process.env.APPROVAL_SECRET;
  if (!secret) throw new Error("APPROVAL_SECRET is not set");
  return secret;
}

export function signApproval(order: string, decision: Decision, expires: number, secret: string): string {
  return createHmac("sha256", secret).update(`${order}.${decision}.${expires}`).digest("hex");
}

/** The order and decision of a link whose signature holds and has not expired, else null. */
export function checkApproval(params: URLSearchParams, secret: string, now = Date.now()): Approval | null {
  const order = params.get("order") ?? "";
  const decision = params.get("decision");
  const expires = Number(params.get("expires"));
  const given = Buffer.from(params.get("sig") ?? "", "utf8");
  if (!/^[0-9]{1,19}$/.test(order) || (decision !== "approve" && decision !== "reject")) return null;
  if (!Number.isSafeInteger(expires) || expires * 1000 < now) return null;
  const expected = Buffer.from(signApproval(order, decision, expires, secret), "utf8");
  // constant time: how long the compare takes says nothing about how much of a forgery matched
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) return null;
  return { order, decision };
}
