import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { encodeArgs, PayloadError } from "@conveyor/client";

function refusal(args: unknown): PayloadError {
  try {
    encodeArgs(args);
  } catch (error) {
    assert.ok(error instanceof PayloadError, `expected a PayloadError, got ${String(error)}`);
    return error;
  }
  assert.fail(`encodeArgs accepted ${String(args)}`);
}

function nested(depth: number): Record<string, unknown> {
  let value: unknown = 1;
  for (let level = 1; level < depth; level++) value = [value];
  return { deep: value };
}

describe("encodeArgs", () => {
  test("returns the JSON text of plain arguments", () => {
    const args = { order_id: 42, tags: ["a", "b"], price: 9.5, gift: null, note: "ok", on: true };
    assert.equal(encodeArgs(args), JSON.stringify(args));
  });

  test("refuses anything but a plain object at the top", () => {
    for (const args of [[1], "x", 3, null, new Date(), new Map()]) {
      assert.match(refusal(args).message, /must be a plain object of keyword arguments/);
    }
  });

  test("names the path of undefined, with the fix", () => {
    const error = refusal({ items: [{ sku: "a" }, { sku: undefined }] });
    assert.equal(error.path, "args.items[1].sku");
    assert.match(error.message, /undefined.*pass null or leave the key out/);
  });

  test("refuses NaN and Infinity", () => {
    assert.equal(refusal({ price: Number.NaN }).path, "args.price");
    assert.match(refusal({ n: [Infinity] }).message, /args\.n\[0\] is Infinity.*finite number/);
  });

  test("refuses BigInt and says to pass a string", () => {
    const error = refusal({ id: 10n });
    assert.equal(error.path, "args.id");
    assert.match(error.message, /BigInt.*String\(value\)/);
  });

  test("refuses a Date and other class instances", () => {
    assert.match(refusal({ at: new Date() }).message, /toISOString/);
    assert.match(refusal({ m: new Map() }).message, /a Map/);
    assert.match(refusal({ f: () => 1 }).message, /a function/);
  });

  test("refuses text Postgres jsonb cannot hold, in values and keys", () => {
    assert.match(refusal({ s: "a\u0000b" }).message, /NUL/);
    assert.match(refusal({ s: "\ud800" }).message, /lone surrogate/);
    assert.match(refusal({ "bad\u0000key": 1 }).message, /has a key .* NUL/);
  });

  test("names odd keys in brackets", () => {
    assert.equal(refusal({ "order id": undefined }).path, 'args["order id"]');
  });

  test("accepts 100 levels of nesting and refuses 101, as the SQL function does", () => {
    assert.doesNotThrow(() => encodeArgs(nested(100)));
    assert.match(refusal(nested(101)).message, /nested deeper than 100 levels/);
  });

  test("refuses a value that refers to itself", () => {
    const loop: Record<string, unknown> = {};
    loop.self = loop;
    assert.match(refusal({ loop }).message, /nested deeper|refers to itself/);
  });

  test("refuses more than maxBytes of JSON", () => {
    assert.match(refusal({ blob: "x".repeat(70_000) }).message, /over the 65,536-byte limit/);
    assert.doesNotThrow(() => encodeArgs({ blob: "x".repeat(70_000) }, { maxBytes: 100_000 }));
  });
});
