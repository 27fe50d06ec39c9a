/** Enqueue jobs with `conveyor.enqueue(...)` on the caller's connection, in its transaction. */

import { ConveyorError, EnqueueOptionError } from "./errors.js";
import { encodeArgs, type JsonObject } from "./json.js";

/**
 * Anything that runs a parameterised query: a node-postgres `Client`, `PoolClient` or `Pool`.
 * Pass the client your transaction runs on, so the job commits or rolls back with it.
 */
export interface Queryable {
  query(text: string, values: unknown[]): Promise<{ rows: unknown[] }>;
}

/** The named parameters of `conveyor.enqueue` (docs/sql.md), in camelCase. */
export interface EnqueueOptions {
  /** The queue the task is declared on; default `'default'`. SQL cannot see Python's
   * `@app.task(queue=...)`: pass it whenever the task lives on another queue. */
  queue?: string;
  /** Higher runs first within a queue; an integer, default 0. */
  priority?: number;
  /** Run at this time (a `Date` or an ISO 8601 string); past or absent: now. */
  runAt?: Date | string;
  /** Run this many seconds from now, by the database's clock. Not with `runAt`. */
  delay?: number;
  /** While an unfinished job holds this key, enqueue returns that job's id instead. */
  uniqueKey?: string;
  /** Logged on every line about the job, e.g. the id of the request that enqueued it. */
  correlationId?: string;
  /** Largest JSON text of `args`, in UTF-8 bytes (default 65,536, as the Python codec). */
  maxArgsBytes?: number;
}

/** One job of `enqueueMany`. */
export interface JobSpec<A = JsonObject> extends EnqueueOptions {
  task: string;
  args?: A;
}

/** A SQL template: literal parts around bound values, as tagged templates receive them. */
export interface SqlTemplate {
  readonly strings: readonly string[];
  readonly values: readonly unknown[];
}

/** A tagged-template function such as Drizzle's `sql`. */
export type SqlTag<T> = (strings: TemplateStringsArray, ...values: unknown[]) => T;

/** The options an enqueue takes besides `task` and `args` (the REST client checks the same). */
export const ENQUEUE_OPTIONS: ReadonlySet<string> = new Set([
  "queue",
  "priority",
  "runAt",
  "delay",
  "uniqueKey",
  "correlationId",
  "maxArgsBytes",
]);
const INT32_MAX = 2 ** 31 - 1;
// conveyor.enqueue refuses run times outside these: no worker could read them
const EARLIEST = Date.parse("0001-01-02T00:00:00Z");
const LATEST = Date.parse("9999-12-30T00:00:00Z");

/**
 * Enqueue one job on `db` and return its id (a bigint, as a string).
 *
 * Runs `SELECT conveyor.enqueue(...)` with bound parameters on the given client, so inside
 * the caller's `BEGIN` the job is invisible until `COMMIT` and gone on `ROLLBACK` (and no
 * worker is woken). `args` are checked first (see `encodeArgs`): bad ones throw a
 * `PayloadError` before anything reaches the database.
 */
export async function enqueue<A = JsonObject>(
  db: Queryable,
  task: string,
  args?: A,
  options: EnqueueOptions = {},
): Promise<string> {
  const template = enqueueTemplate(task, args, options);
  const { rows } = await db.query(toPositional(template), [...template.values]);
  return readId(rows[0]);
}

/**
 * Enqueue several jobs in one statement and return their ids in the order given. Like
 * `enqueue`, it runs on the caller's client and joins its transaction; every job is checked
 * before any is sent.
 */
export async function enqueueMany<A = JsonObject>(
  db: Queryable,
  jobs: readonly JobSpec<A>[],
): Promise<string[]> {
  if (jobs.length === 0) return [];
  const specs = jobs.map((job, index) => {
    const { task, args, ...options } = job;
    checkOptions(options, `jobs[${index}].`);
    return {
      task: checkTask(task),
      args: JSON.parse(encodeArgs(args ?? {}, { maxBytes: options.maxArgsBytes })) as JsonObject,
      queue: options.queue ?? null,
      run_at: options.runAt === undefined ? null : isoTime(options.runAt),
      delay: options.delay ?? null,
      priority: options.priority ?? null,
      unique_key: options.uniqueKey ?? null,
      correlation_id: options.correlationId ?? null,
    };
  });
  // One call per element; WITH ORDINALITY returns the ids in the order given.
  const { rows } = await db.query(
    `SELECT conveyor.enqueue(
              j.job ->> 'task', j.job -> 'args',
              queue => j.job ->> 'queue',
              run_at => coalesce((j.job ->> 'run_at')::timestamptz,
                                 now() + make_interval(secs => (j.job ->> 'delay')::float8)),
              priority => (j.job ->> 'priority')::integer,
              unique_key => j.job ->> 'unique_key',
              correlation_id => j.job ->> 'correlation_id') AS id
       FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS j(job, n)
      ORDER BY j.n`,
    [JSON.stringify(specs)],
  );
  return rows.map(readId);
}

/**
 * The `SELECT conveyor.enqueue(...)` call for `task`, `args` and `options`, written with
 * `tag` (Drizzle's `sql`, say) so it runs with `db.execute(...)` in that library's
 * transaction. Values are bound parameters, never spliced into the text.
 *
 *     await tx.execute(enqueueSql(sql, "send-receipt", { order_id: 42 }, { queue: "emails" }));
 */
export function enqueueSql<T, A = JsonObject>(
  tag: SqlTag<T>,
  task: string,
  args?: A,
  options: EnqueueOptions = {},
): T {
  const { strings, values } = enqueueTemplate(task, args, options);
  const parts = Object.assign([...strings], { raw: [...strings] });
  return tag(parts, ...values);
}

/** The checked SQL call as a template (literal parts around bound values). */
export function enqueueTemplate<A = JsonObject>(
  task: string,
  args?: A,
  options: EnqueueOptions = {},
): SqlTemplate {
  checkOptions(options, "");
  const strings: string[] = ["SELECT conveyor.enqueue("];
  const values: unknown[] = [];
  const bind = (value: unknown, after: string): void => {
    values.push(value);
    strings.push(after);
  };
  bind(checkTask(task), "::text, ");
  bind(encodeArgs(args ?? {}, { maxBytes: options.maxArgsBytes }), "::jsonb");
  const named = (name: string, value: unknown, cast: string): void => {
    strings[strings.length - 1] += `, ${name} => `;
    bind(value, cast);
  };
  if (options.queue !== undefined) named("queue", options.queue, "::text");
  if (options.runAt !== undefined) named("run_at", isoTime(options.runAt), "::timestamptz");
  if (options.delay !== undefined) {
    // The database's clock, like every other time in Conveyor.
    strings[strings.length - 1] += ", run_at => now() + make_interval(secs => ";
    bind(options.delay, "::double precision)");
  }
  if (options.priority !== undefined) named("priority", options.priority, "::integer");
  if (options.uniqueKey !== undefined) named("unique_key", options.uniqueKey, "::text");
  if (options.correlationId !== undefined) {
    named("correlation_id", options.correlationId, "::text");
  }
  strings[strings.length - 1] += ") AS id";
  return { strings, values };
}

function toPositional({ strings }: SqlTemplate): string {
  return strings.reduce((text, part, index) => `${text}$${index}${part}`);
}

function readId(row: unknown): string {
  const id = (row as { id?: unknown } | undefined)?.id;
  if (typeof id === "string" || typeof id === "number" || typeof id === "bigint") {
    return String(id);
  }
  throw new ConveyorError("conveyor.enqueue returned no job id");
}

function checkTask(task: unknown): string {
  if (typeof task !== "string" || task === "") {
    throw new EnqueueOptionError(
      `task must be the task's registered name (a non-empty string), got ${String(task)}`,
      "task",
    );
  }
  return task;
}

function checkOptions(options: EnqueueOptions, where: string): void {
  for (const name of Object.keys(options)) {
    if (!ENQUEUE_OPTIONS.has(name)) {
      const hint = name === "maxAttempts" || name === "max_attempts"
        ? "; conveyor.enqueue takes no max_attempts: the job uses the task's setting"
        : `; the options are ${[...ENQUEUE_OPTIONS].join(", ")}`;
      throw new EnqueueOptionError(`unknown enqueue option '${where}${name}'${hint}`, name);
    }
  }
  const fail = (option: string, message: string): never => {
    throw new EnqueueOptionError(`${where}${option} ${message}`, option);
  };
  const { queue, priority, runAt, delay, uniqueKey, correlationId } = options;
  if (queue !== undefined && (typeof queue !== "string" || queue === "")) {
    fail("queue", "must be a non-empty string (the queue the task is declared on)");
  }
  if (priority !== undefined && !(Number.isInteger(priority) && Math.abs(priority) <= INT32_MAX)) {
    fail("priority", `must be an integer between -${INT32_MAX} and ${INT32_MAX}, got ${priority}`);
  }
  if (runAt !== undefined && delay !== undefined) {
    fail("delay", "and runAt were both given; pass one of them");
  }
  if (delay !== undefined && !(typeof delay === "number" && Number.isFinite(delay) && delay >= 0)) {
    fail("delay", `must be a finite number of seconds >= 0, got ${String(delay)}`);
  }
  if (uniqueKey !== undefined) {
    const size = typeof uniqueKey === "string" ? new TextEncoder().encode(uniqueKey).length : 0;
    if (size === 0 || size > 1000 || uniqueKey.includes("\u0000")) {
      fail(
        "uniqueKey",
        `must be 1 to 1,000 bytes of text without NUL, got ${size} bytes; pass a hash of a` +
          " longer key (e.g. a SHA-256 hex digest)",
      );
    }
  }
  if (
    correlationId !== undefined &&
    (typeof correlationId !== "string" || correlationId.length > 255)
  ) {
    fail("correlationId", "must be a string of at most 255 characters");
  }
}

function isoTime(value: Date | string): string {
  const date = value instanceof Date ? value : new Date(value);
  const time = date.getTime();
  if (!(time >= EARLIEST && time <= LATEST)) {
    throw new EnqueueOptionError(
      `runAt must be a valid time between 0001-01-02 and 9999-12-30, got ${String(value)}`,
      "runAt",
    );
  }
  return date.toISOString();
}
