// app/api/approvals/route.ts: the link in the approval e-mail. GET only shows a button (mail
// scanners open links; opening must not decide); POST checks the signature and sends the event
// that resumes the order's approval workflow, waiting in Postgres for ("order.approval", id).
import { sendEvent } from "@conveyor/client";

import { approvalSecret, checkApproval } from "../../../lib/approval";
import { db } from "../../../lib/db";

const invalid = () => new Response("this link is not valid (or has expired)\n", { status: 403 });

export async function GET(request: Request): Promise<Response> {
  const approval = checkApproval(new URL(request.url).searchParams, approvalSecret());
  if (approval === null) return invalid();
  const page = `<form method="post"><button>${approval.decision} order ${approval.order}</button></form>`;
  return new Response(page, { headers: { "content-type": "text/html; charset=utf-8" } });
}

export async function POST(request: Request): Promise<Response> {
  const approval = checkApproval(new URL(request.url).searchParams, approvalSecret());
  if (approval === null) return invalid();
  const eventId = await sendEvent(db(), "order.approval", approval.order, {
    decision: approval.decision,
    at: new Date().toISOString(),
  });
  return Response.json({ ...approval, eventId });
}
