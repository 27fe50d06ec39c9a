/**
 * Start durable workflow runs and send their events with `conveyor.start_workflow(...)` and
 * `conveyor.send_event(...)` (docs/workflows.md) on the caller's connection, in its transaction.
 */

import { ConveyorError, EnqueueOptionError } from "./errors.js";
import type { Queryable, SqlTag, SqlTemplate } from "./enqueue.js";
import { encodeArgs, encodeJson, type JsonObject } from "./json.js";

/** Options of `startWorkflow`. */
export interface StartWorkflowOptions {
  /** The run's id (1 to 200 bytes): a second start with the same id returns it and starts
   * nothing, so a retried request starts one run. Absent: a random UUID. */
  runId?: string;
  /** The queue the workflow is declared on; default `'default'`. SQL cannot see Python's
   * `@app.workflow(queue=...)`: pass it whenever the workflow lives on another queue. */
  queue?: string;
  /** The priority of the run's job (higher runs first within its queue); default 0. */
  priority?: number;
  /** Largest JSON text of `args`, in UTF-8 bytes (default 65,536, as the Python codec). */
  maxArgsBytes?: number;
}

/** Largest JSON text of an event's payload, in UTF-8 bytes, as `conveyor.send_event` allows. */
export const MAX_EVENT_PAYLOAD_BYTES = 64 * 1024;

const START_OPTIONS: ReadonlySet<string> = new Set(["runId", "queue", "priority", "maxArgsBytes"]);
const INT32_MAX = 2 ** 31 - 1;
const MAX_KEY_BYTES = 1000;
const MAX_RUN_ID_BYTES = 200;

/**
 * Start a run of the workflow `name` with `args` (its keyword arguments) on `db`, and return
 * the run's id.
 *
 * Runs `SELECT conveyor.start_workflow(...)` on the given client, so inside the caller's
 * `BEGIN` the run is invisible until `COMMIT` and gone on `ROLLBACK`. With `runId`, a run that
 * already has the id is returned and no second run starts. `args` are checked as `encodeArgs`
 * checks a job's (a `PayloadError` before anything reaches the database).
 */
export async function startWorkflow<A = JsonObject>(
  db: Queryable,
  name: string,
  args?: A,
  options: StartWorkflowOptions = {},
): Promise<string> {
  const template = startWorkflowTemplate(name, args, options);
  const { rows } = await db.query(toPositional(template), [...template.values]);
  return readId(rows[0], "conveyor.start_workflow returned no run id");
}

/**
 * Send the event `name` with `key` and `payload` (any JSON value; default `{}`) on `db`, and
 * return the event's id (a bigint, as a string).
 *
 * The oldest run waiting for (name, key) consumes it and wakes; with none waiting it is kept
 * (7 days by default) for the first run that waits. Inside the caller's `BEGIN` nothing is
 * sent until `COMMIT`, and nothing at all on `ROLLBACK`.
 */
export async function sendEvent(
  db: Queryable,
  name: string,
  key: string,
  payload: unknown = {},
): Promise<string> {
  const template = sendEventTemplate(name, key, payload);
  const { rows } = await db.query(toPositional(template), [...template.values]);
  return readId(rows[0], "conveyor.send_event returned no event id");
}

/**
 * The `SELECT conveyor.start_workflow(...)` call written with `tag` (Drizzle's `sql`), to run
 * with `tx.execute(...)` in that library's transaction; the row's `id` is the run's id.
 */
export function startWorkflowSql<T, A = JsonObject>(
  tag: SqlTag<T>,
  name: string,
  args?: A,
  options: StartWorkflowOptions = {},
): T {
  return tagged(tag, startWorkflowTemplate(name, args, options));
}

/**
 * The `SELECT conveyor.send_event(...)` call written with `tag` (Drizzle's `sql`), to run
 * with `tx.execute(...)`; the row's `id` is the event's id.
 */
export function sendEventSql<T>(tag: SqlTag<T>, name: string, key: string, payload: unknown = {}): T {
  return tagged(tag, sendEventTemplate(name, key, payload));
}

/** The checked `conveyor.start_workflow` call as a template (literal parts around values). */
export function startWorkflowTemplate<A = JsonObject>(
  name: string,
  args?: A,
  options: StartWorkflowOptions = {},
): SqlTemplate {
  for (const option of Object.keys(options)) {
    if (!START_OPTIONS.has(option)) {
      throw new EnqueueOptionError(
        `unknown startWorkflow option '${option}'; the options are ${[...START_OPTIONS].join(", ")}`,
        option,
      );
    }
  }
  const { runId, queue, priority, maxArgsBytes } = options;
  if (runId !== undefined) checkText(runId, "runId", 1, MAX_RUN_ID_BYTES);
  if (queue !== undefined && (typeof queue !== "string" || queue === "")) {
    throw new EnqueueOptionError(
      "queue must be a non-empty string (the queue the workflow is declared on)",
      "queue",
    );
  }
  if (priority !== undefined && !(Number.isInteger(priority) && Math.abs(priority) <= INT32_MAX)) {
    throw new EnqueueOptionError(
      `priority must be an integer between -${INT32_MAX} and ${INT32_MAX}, got ${priority}`,
      "priority",
    );
  }
  return {
    strings: [
      "SELECT conveyor.start_workflow(",
      "::text, ",
      "::jsonb, run_id => ",
      "::text, queue => ",
      "::text, priority => ",
      "::integer) AS id",
    ],
    values: [
      checkText(name, "name", 1, MAX_KEY_BYTES),
      encodeArgs(args ?? {}, { maxBytes: maxArgsBytes }),
      runId ?? null,
      queue ?? null,
      priority ?? null,
    ],
  };
}

/** The checked `conveyor.send_event` call as a template (literal parts around values). */
export function sendEventTemplate(name: string, key: string, payload: unknown = {}): SqlTemplate {
  return {
    strings: ["SELECT conveyor.send_event(", "::text, ", "::text, ", "::jsonb) AS id"],
    values: [
      checkText(name, "name", 1, MAX_KEY_BYTES),
      checkText(key, "key", 0, MAX_KEY_BYTES),
      encodeJson(payload, "payload", { maxBytes: MAX_EVENT_PAYLOAD_BYTES }),
    ],
  };
}

function checkText(value: unknown, what: string, min: number, max: number): string {
  const size = typeof value === "string" ? new TextEncoder().encode(value).length : -1;
  if (typeof value !== "string" || size < min || size > max || value.includes("\u0000")) {
    const got = typeof value === "string" ? `${size} bytes` : String(value);
    throw new EnqueueOptionError(
      `${what} must be ${min} to ${max.toLocaleString("en")} bytes of text without NUL, got` +
        ` ${got}; pass a hash of a longer value (e.g. a SHA-256 hex digest)`,
      what,
    );
  }
  return value;
}

function tagged<T>(tag: SqlTag<T>, { strings, values }: SqlTemplate): T {
  const parts = Object.assign([...strings], { raw: [...strings] });
  return tag(parts, ...values);
}

function toPositional({ strings }: SqlTemplate): string {
  return strings.reduce((text, part, index) => `${text}$${index}${part}`);
}

function readId(row: unknown, missing: string): string {
  const id = (row as { id?: unknown } | undefined)?.id;
  if (typeof id === "string" || typeof id === "number" || typeof id === "bigint") {
    return String(id);
  }
  throw new ConveyorError(missing);
}
