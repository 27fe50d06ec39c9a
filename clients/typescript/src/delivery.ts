/** Verify (and, for tests, sign) the HTTP deliveries Conveyor POSTs to endpoints. */

import { ConveyorError, DeliveryVerificationError } from "./errors.js";
import type { JsonObject, JsonValue } from "./json.js";
import {
  anySignatureMatches,
  type DeliveryHeaders,
  hmac,
  secretKey,
  secretList,
  signatureHeader,
} from "./signature.js";

/** How far `webhook-timestamp` may be from now, either way: 5 minutes, as the spec advises. */
export const DEFAULT_TOLERANCE_SECONDS = 5 * 60;

/**
 * A verified delivery: the job Conveyor asks this route to run. Field names are the JSON
 * body's in camelCase (`max_attempts` → `maxAttempts`); `id` is the job id as a string
 * (a bigint, like `enqueue`'s result), and times are `Date`s.
 */
export interface Delivery<A = JsonObject> {
  /** The job id (a bigint, as a string). */
  id: string;
  /** The job's task: the endpoint's name. */
  task: string;
  /** The job's arguments, as enqueued. Their type is the caller's claim: not checked. */
  args: A;
  /** This attempt's number, from 1. */
  attempt: number;
  /** Attempts the job may have in all; null when the job does not say. */
  maxAttempts: number | null;
  queue: string;
  correlationId: string | null;
  createdAt: Date;
  /** The `webhook-id` header: the same on every redelivery of one attempt. Dedupe on it. */
  webhookId: string;
  /** The `webhook-timestamp` header: when this request was signed. */
  timestamp: Date;
}

/** The JSON body of a delivery, as Conveyor sends it. */
export interface DeliveryBody {
  id: number | string;
  task: string;
  args: JsonObject;
  attempt: number;
  max_attempts: number | null;
  queue: string;
  correlation_id: string | null;
  created_at: string;
}

export interface VerifyOptions {
  /** Allowed distance of `webhook-timestamp` from now, in seconds (default 300). */
  toleranceSeconds?: number;
  /** The current time (for tests); default `new Date()`. */
  now?: Date;
}

/**
 * Check that `request` is an authentic, fresh Conveyor delivery and return its job.
 *
 * Requires the three Standard Webhooks headers; refuses a timestamp more than 5 minutes from
 * now (either way: replays and forged future times); reads the raw body once; accepts it when
 * any `v1` signature matches the HMAC-SHA256 under any of `secrets` (several during a
 * rotation), compared in constant time. Throws a `DeliveryVerificationError` (its `reason`
 * says which check failed) for anything else: answer 401. Call it before anything else reads
 * the body.
 */
export async function verifyDelivery<A = JsonObject>(
  request: Request,
  secrets: string | readonly string[],
  options: VerifyOptions = {},
): Promise<Delivery<A>> {
  const keys = secretList(secrets).map(secretKey);
  const webhookId = requiredHeader(request, "webhook-id");
  const timestampText = requiredHeader(request, "webhook-timestamp");
  const signature = requiredHeader(request, "webhook-signature");
  const timestamp = checkTimestamp(timestampText, options);
  if (request.bodyUsed) {
    throw new ConveyorError(
      "the request body was already read: call verifyDelivery before request.json() or" +
        " request.text() (it needs the raw bytes), or pass request.clone()",
    );
  }
  const body = new Uint8Array(await request.arrayBuffer());
  const expected = await Promise.all(
    keys.map((key) => hmac(key, webhookId, timestampText, body)),
  );
  if (!anySignatureMatches(expected, signature)) {
    throw new DeliveryVerificationError(
      "bad_signature",
      "no webhook-signature matches the body under any of the secrets: a forged or altered" +
        " request, or the endpoint's secret differs from this route's",
    );
  }
  return parseBody<A>(body, webhookId, timestamp);
}

export interface SignOptions {
  /** The `webhook-id`; default a random `msg_...` id. */
  webhookId?: string;
  /** When it was signed; default now. */
  timestamp?: Date;
}

/**
 * Sign a delivery body as Conveyor does and return the three headers: for testing your
 * routes. `body` is the exact text to send (see `deliveryBody`).
 */
export async function signDelivery(
  body: string | Uint8Array,
  secrets: string | readonly string[],
  options: SignOptions = {},
): Promise<DeliveryHeaders> {
  const webhookId = options.webhookId ?? `msg_${crypto.randomUUID().replaceAll("-", "")}`;
  const seconds = Math.floor((options.timestamp ?? new Date()).getTime() / 1000);
  const timestamp = String(seconds);
  const bytes = typeof body === "string" ? new TextEncoder().encode(body) : body;
  return {
    "webhook-id": webhookId,
    "webhook-timestamp": timestamp,
    "webhook-signature": await signatureHeader(secrets, webhookId, timestamp, bytes),
  };
}

/** A job to deliver in a test: `task` and `args`, the rest defaulted. */
export interface TestJob {
  id?: number | string;
  task: string;
  args?: JsonObject;
  attempt?: number;
  maxAttempts?: number | null;
  queue?: string;
  correlationId?: string | null;
  createdAt?: Date;
}

/** The JSON text of a delivery body for `job`, as Conveyor would send it. */
export function deliveryBody(job: TestJob): string {
  const body: DeliveryBody = {
    id: job.id ?? 1,
    task: job.task,
    args: job.args ?? {},
    attempt: job.attempt ?? 1,
    max_attempts: job.maxAttempts === undefined ? 5 : job.maxAttempts,
    queue: job.queue ?? "default",
    correlation_id: job.correlationId ?? null,
    created_at: (job.createdAt ?? new Date()).toISOString(),
  };
  return JSON.stringify(body);
}

/**
 * A signed `POST` of `job` to `url`, as Conveyor would send it: call your route handler with
 * it in tests (`await POST(await deliveryRequest(...))`).
 */
export async function deliveryRequest(
  url: string,
  job: TestJob,
  secrets: string | readonly string[],
  options: SignOptions = {},
): Promise<Request> {
  const body = deliveryBody(job);
  const headers = await signDelivery(body, secrets, options);
  return new Request(url, {
    method: "POST",
    headers: { ...headers, "content-type": "application/json" },
    body,
  });
}

function requiredHeader(request: Request, name: keyof DeliveryHeaders): string {
  const value = request.headers.get(name);
  if (value === null || value.trim() === "") {
    throw new DeliveryVerificationError(
      "missing_header",
      `the ${name} header is missing: not a signed Conveyor delivery`,
    );
  }
  return value.trim();
}

function checkTimestamp(text: string, options: VerifyOptions): Date {
  if (!/^\d{1,12}$/.test(text)) {
    throw new DeliveryVerificationError(
      "bad_timestamp",
      `webhook-timestamp must be whole Unix seconds, got ${JSON.stringify(text.slice(0, 40))}`,
    );
  }
  const seconds = Number(text);
  const now = Math.floor((options.now ?? new Date()).getTime() / 1000);
  const tolerance = options.toleranceSeconds ?? DEFAULT_TOLERANCE_SECONDS;
  if (now - seconds > tolerance) {
    throw new DeliveryVerificationError(
      "timestamp_too_old",
      `webhook-timestamp is ${now - seconds} s old, over the ${tolerance} s window: a replayed` +
        " request (or this server's clock is wrong)",
    );
  }
  if (seconds - now > tolerance) {
    throw new DeliveryVerificationError(
      "timestamp_too_new",
      `webhook-timestamp is ${seconds - now} s in the future, over the ${tolerance} s window` +
        " (is this server's clock wrong?)",
    );
  }
  return new Date(seconds * 1000);
}

function parseBody<A>(body: Uint8Array, webhookId: string, timestamp: Date): Delivery<A> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(body));
  } catch {
    throw badBody("the body is not JSON text");
  }
  if (!isObject(parsed)) throw badBody("the body is not a JSON object");
  const { id, task, args, attempt, max_attempts, queue, correlation_id, created_at } = parsed;
  const exactId = jobId(id, webhookId);
  if (exactId === undefined) throw badBody("its id is not an integer");
  if (typeof task !== "string") throw badBody("its task is not a string");
  if (!isObject(args)) throw badBody("its args are not a JSON object");
  if (!isPositiveInteger(attempt)) throw badBody("its attempt is not a positive integer");
  if (!(max_attempts === null || max_attempts === undefined || isPositiveInteger(max_attempts))) {
    throw badBody("its max_attempts is not a positive integer or null");
  }
  if (typeof queue !== "string") throw badBody("its queue is not a string");
  if (!(correlation_id === null || correlation_id === undefined || typeof correlation_id === "string")) {
    throw badBody("its correlation_id is not a string or null");
  }
  const createdAt = typeof created_at === "string" ? new Date(created_at) : new Date(Number.NaN);
  if (Number.isNaN(createdAt.getTime())) throw badBody("its created_at is not an ISO 8601 time");
  return {
    id: exactId,
    task,
    args: args as A,
    attempt,
    maxAttempts: max_attempts ?? null,
    queue,
    correlationId: correlation_id ?? null,
    createdAt,
    webhookId,
    timestamp,
  };
}

/**
 * The job id as exact decimal text. JSON.parse rounds an id beyond 2^53 (bigserial allows
 * it); the signed `webhook-id` (`job_<id>`) carries it exactly, so take it from there when it
 * names the same number.
 */
function jobId(id: unknown, webhookId: string): string | undefined {
  if (isIntegerText(id)) return id;
  if (typeof id !== "number" || !Number.isInteger(id)) return undefined;
  if (Number.isSafeInteger(id)) return String(id);
  const match = /^job_([0-9]+)$/.exec(webhookId);
  return match !== null && Number(match[1]) === id ? match[1] : undefined;
}

function badBody(problem: string): DeliveryVerificationError {
  return new DeliveryVerificationError(
    "bad_body",
    `the signature is valid but the body is not a Conveyor delivery: ${problem}`,
  );
}

function isObject(value: unknown): value is { [key: string]: JsonValue | undefined } {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function isPositiveInteger(value: unknown): value is number {
  return typeof value === "number" && Number.isSafeInteger(value) && value >= 1;
}

function isIntegerText(value: unknown): value is string {
  return typeof value === "string" && /^-?\d{1,19}$/.test(value);
}
