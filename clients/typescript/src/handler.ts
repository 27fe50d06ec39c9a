/**
 * `deliveryHandler`: a route handler that verifies a delivery, runs your function and answers
 * with the status Conveyor reads as the job's outcome.
 */

import { type Delivery, type VerifyOptions, verifyDelivery } from "./delivery.js";
import { ConveyorError, DeliveryVerificationError } from "./errors.js";
import type { JsonObject, JsonValue } from "./json.js";

/** Throw to have Conveyor retry the job: 503, at `after` when given (seconds or a time). */
export class Retry extends ConveyorError {
  override name = "Retry";
  constructor(
    /** Seconds from now, or the time to retry at; absent: the job's backoff decides. */
    readonly after?: number | Date,
    message = "retry requested",
  ) {
    super(message);
  }
}

/** Throw to cancel the job: 410, no more attempts. */
export class Cancel extends ConveyorError {
  override name = "Cancel";
  constructor(message = "cancelled by the endpoint") {
    super(message);
  }
}

/** Throw to fail the job now, whatever attempts remain: 422. */
export class FailNow extends ConveyorError {
  override name = "FailNow";
  constructor(message = "failed by the endpoint") {
    super(message);
  }
}

/** What the function may return: a JSON value (the job's result), nothing, or a `Response`. */
export type HandlerResult = JsonValue | undefined | void | Response;

export interface DeliveryHandlerOptions extends VerifyOptions {
  /** The endpoint's secret, or several during a rotation. Read when a request arrives, so a
   * build without the secret set (`next build`) still works. */
  secrets: string | readonly string[] | (() => string | readonly string[]);
  /** Called with an unexpected error before the 500; default `console.error`. */
  onError?: (error: unknown, delivery: Delivery<unknown> | undefined) => void;
}

/**
 * Wrap `fn` into a route handler (`export const POST = deliveryHandler(...)`).
 *
 * | outcome                                   | status | Conveyor then                     |
 * |-------------------------------------------|--------|-----------------------------------|
 * | `fn` returns a JSON value                 | 200    | completes; the value is the result |
 * | `fn` returns a `Response`                 | its own| as its status says                 |
 * | `throw new Retry(after?)`                 | 503    | retries, at `Retry-After` if given |
 * | `throw new Cancel()`                      | 410    | cancels the job                    |
 * | `throw new FailNow()`                     | 422    | fails it now (no more attempts)    |
 * | verification fails                        | 401    | (a forgery: the job is not touched)|
 * | any other error                           | 500    | retries with backoff               |
 */
export function deliveryHandler<A = JsonObject>(
  fn: (delivery: Delivery<A>, request: Request) => HandlerResult | Promise<HandlerResult>,
  options: DeliveryHandlerOptions,
): (request: Request) => Promise<Response> {
  const { secrets, onError = defaultOnError, ...verifyOptions } = options;
  return async (request: Request): Promise<Response> => {
    let delivery: Delivery<A> | undefined;
    try {
      const current = typeof secrets === "function" ? secrets() : secrets;
      delivery = await verifyDelivery<A>(request, current, verifyOptions);
      const result = await fn(delivery, request);
      if (result instanceof Response) return result;
      return json(200, result ?? null);
    } catch (error) {
      return errorResponse(error, delivery, onError, verifyOptions.now);
    }
  };
}

function errorResponse(
  error: unknown,
  delivery: Delivery<unknown> | undefined,
  onError: NonNullable<DeliveryHandlerOptions["onError"]>,
  now: Date | undefined,
): Response {
  if (error instanceof DeliveryVerificationError) {
    return json(401, { error: error.reason, message: error.message });
  }
  if (error instanceof Retry) {
    const headers: Record<string, string> = {};
    if (error.after !== undefined) headers["retry-after"] = String(retryAfter(error.after, now));
    return json(503, { outcome: "retry", message: error.message }, headers);
  }
  if (error instanceof Cancel) return json(410, { outcome: "cancel", message: error.message });
  if (error instanceof FailNow) return json(422, { outcome: "fail", message: error.message });
  onError(error, delivery);
  // Only an authentic delivery gets the error's text (it lands in the job's errors).
  const body: JsonObject = { error: "exception" };
  if (delivery && error instanceof Error) {
    body.type = error.name;
    body.message = error.message;
  }
  return json(500, body);
}

function retryAfter(after: number | Date, now: Date | undefined): number {
  const seconds =
    after instanceof Date ? (after.getTime() - (now ?? new Date()).getTime()) / 1000 : after;
  return Number.isFinite(seconds) ? Math.max(0, Math.ceil(seconds)) : 0;
}

function json(status: number, body: JsonValue, headers: Record<string, string> = {}): Response {
  let text: string;
  try {
    text = JSON.stringify(body);
  } catch (error) {
    // a result JSON cannot hold (a BigInt, a cycle): the handler's bug, reported as a 500
    const message = error instanceof Error ? error.message : String(error);
    text = JSON.stringify({ error: "result_not_json", message });
    status = 500;
  }
  return new Response(text, {
    status,
    headers: { "content-type": "application/json", ...headers },
  });
}

function defaultOnError(error: unknown, delivery: Delivery<unknown> | undefined): void {
  const where = delivery ? ` (job ${delivery.id}, task ${delivery.task})` : "";
  console.error(`conveyor delivery handler failed${where}:`, error);
}
