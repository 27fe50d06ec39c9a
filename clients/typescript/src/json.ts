/** JSON values and the check that job arguments can be stored and read back. */

import { PayloadError } from "./errors.js";

export type JsonPrimitive = string | number | boolean | null;
export type JsonValue = JsonPrimitive | JsonValue[] | { [key: string]: JsonValue };
export type JsonObject = { [key: string]: JsonValue };

/** Deepest nesting of lists and objects (the 1 in `{"a": [1]}` is at level 2), as in the
 * Python codec and the SQL function: deeper values exhaust recursive JSON readers. */
export const MAX_NESTING = 100;
/** Largest JSON text of a job's arguments, in UTF-8 bytes: the Python codec's default. */
export const DEFAULT_MAX_ARGS_BYTES = 64 * 1024;

export interface EncodeArgsOptions {
  /** Largest JSON text accepted, in UTF-8 bytes (default 65,536, as the Python codec). */
  maxBytes?: number;
}

/**
 * Return the JSON text of a job's arguments, or throw a `PayloadError` naming the first value
 * that Postgres's jsonb or Conveyor's codec would refuse, and how to fix it.
 *
 * Refused: anything but a plain object at the top; `undefined`, functions and symbols (which
 * `JSON.stringify` would drop silently); `NaN` and `Infinity`; BigInt (pass `String(n)`);
 * `Date`, `Map`, `Set` and other class instances; text holding NUL or a lone surrogate;
 * nesting deeper than 100 levels (a cycle included); more than `maxBytes` of JSON.
 */
export function encodeArgs(args: unknown, options: EncodeArgsOptions = {}): string {
  if (!isPlainObject(args)) {
    throw new PayloadError(
      `job arguments must be a plain object of keyword arguments, got ${describe(args)};` +
        " wrap the value: { value: ... }",
      "args",
    );
  }
  return encodeChecked(args, "args", "job arguments", options.maxBytes ?? DEFAULT_MAX_ARGS_BYTES);
}

/**
 * Return the JSON text of any JSON value (an event's payload, say) under the rules of
 * `encodeArgs`, except that the top may be any JSON value; `path` names it in errors.
 */
export function encodeJson(
  value: unknown,
  path: string,
  options: EncodeArgsOptions = {},
): string {
  if (value === undefined) {
    throw new PayloadError(`${path} is undefined, which JSON cannot hold; pass null or {}`, path);
  }
  return encodeChecked(value, path, path, options.maxBytes ?? DEFAULT_MAX_ARGS_BYTES);
}

function encodeChecked(value: unknown, path: string, what: string, maxBytes: number): string {
  checkTree(value, path);
  const text = JSON.stringify(value);
  const size = new TextEncoder().encode(text).length;
  if (size > maxBytes) {
    throw new PayloadError(
      `${what} ${what === path ? "is" : "are"} ${size.toLocaleString("en")} bytes, over the` +
        ` ${maxBytes.toLocaleString("en")}-byte limit; store the data elsewhere (a table,` +
        " object storage) and pass its id instead",
      path,
    );
  }
  return text;
}

// Iterative walk: a deep (or cyclic) value must not exhaust the stack before the depth check.
function checkTree(root: unknown, path: string): void {
  checkValue(root, path);
  if (!(Array.isArray(root) || isPlainObject(root))) return;
  const stack: Array<[unknown, string, number]> = [];
  pushChildren(stack, root, path, 1);
  for (let entry = stack.pop(); entry !== undefined; entry = stack.pop()) {
    const [value, path, level] = entry;
    if (level > MAX_NESTING) {
      throw new PayloadError(
        `${path.slice(0, 80)}... is nested deeper than ${MAX_NESTING} levels (or the value` +
          " refers to itself); flatten it, or store the data elsewhere and pass its id",
        path,
      );
    }
    checkValue(value, path);
    if (Array.isArray(value) || isPlainObject(value)) {
      pushChildren(stack, value, path, level + 1);
    }
  }
}

function pushChildren(
  stack: Array<[unknown, string, number]>,
  container: unknown[] | Record<string, unknown>,
  path: string,
  level: number,
): void {
  if (Array.isArray(container)) {
    for (let index = container.length - 1; index >= 0; index--) {
      stack.push([container[index], `${path}[${index}]`, level]);
    }
    return;
  }
  const keys = Object.keys(container);
  for (let index = keys.length - 1; index >= 0; index--) {
    const key = keys[index] as string;
    const problem = textProblem(key);
    if (problem) {
      throw new PayloadError(`${path} has a key ${JSON.stringify(key)} that ${problem}`, path);
    }
    stack.push([container[key], childPath(path, key), level]);
  }
}

function checkValue(value: unknown, path: string): void {
  switch (typeof value) {
    case "string": {
      const problem = textProblem(value);
      if (problem) throw new PayloadError(`${path} ${problem}`, path);
      return;
    }
    case "number":
      if (!Number.isFinite(value)) {
        throw new PayloadError(
          `${path} is ${value}, which JSON cannot hold; pass a finite number or null`,
          path,
        );
      }
      return;
    case "boolean":
      return;
    case "bigint":
      throw new PayloadError(
        `${path} is a BigInt, which JSON cannot hold; pass it as a string (String(value))` +
          " or, when it is below 2**53, as a number",
        path,
      );
    case "undefined":
      throw new PayloadError(
        `${path} is undefined, which JSON cannot hold (JSON.stringify would drop it);` +
          " pass null or leave the key out",
        path,
      );
    case "function":
    case "symbol":
      throw new PayloadError(
        `${path} is a ${typeof value}, which JSON cannot hold; pass plain JSON values`,
        path,
      );
    default:
      break;
  }
  if (value === null || Array.isArray(value) || isPlainObject(value)) return;
  const fix =
    value instanceof Date
      ? "pass an ISO date string (value.toISOString())"
      : "pass plain JSON values (string, number, boolean, null, array, plain object), e.g. an id";
  throw new PayloadError(`${path} is ${describe(value)}, which JSON cannot hold; ${fix}`, path);
}

function textProblem(text: string): string | undefined {
  if (text.includes("\u0000")) {
    return "contains a NUL character, which Postgres JSON cannot hold; remove it or encode the text (base64)";
  }
  if (!text.isWellFormed()) {
    return "contains a lone surrogate, which is not valid UTF-8; decode the bytes it came from properly, or encode them (base64)";
  }
  return undefined;
}

function childPath(path: string, key: string): string {
  return /^[A-Za-z_$][\w$]*$/.test(key) ? `${path}.${key}` : `${path}[${JSON.stringify(key)}]`;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return false;
  const proto: unknown = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

function describe(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  if (typeof value === "object") {
    const name = (value as { constructor?: { name?: unknown } }).constructor?.name;
    return typeof name === "string" && name ? `a ${name}` : "an object";
  }
  return `a ${typeof value}`;
}
