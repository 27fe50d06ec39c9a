/**
 * The Standard Webhooks 1.0 signature: HMAC-SHA256 over `${webhook-id}.${webhook-timestamp}.`
 * followed by the raw body, sent as `v1,<base64>`; several space-separated during a rotation.
 * Web Crypto only, so it runs on Node, Next.js's Edge runtime, Deno, Bun and Workers alike.
 */

import { ConveyorError } from "./errors.js";

const SECRET_PREFIX = "whsec_";
const encoder = new TextEncoder();

/** The three headers of a signed delivery. */
export type DeliveryHeaders = {
  "webhook-id": string;
  "webhook-timestamp": string;
  "webhook-signature": string;
};

/**
 * The HMAC key of a secret: a `whsec_` secret is base64 after its prefix (as Standard Webhooks
 * secrets are); any other string is used as its UTF-8 bytes.
 */
export function secretKey(secret: string): Uint8Array {
  if (secret.startsWith(SECRET_PREFIX)) {
    const key = decodeBase64(secret.slice(SECRET_PREFIX.length));
    if (key === undefined || key.length === 0) {
      throw new ConveyorError(
        "a whsec_ signing secret must be base64 after its prefix; copy the secret exactly as" +
          " `conveyor endpoint show` prints it",
      );
    }
    return key;
  }
  if (secret === "") throw new ConveyorError("a signing secret cannot be empty");
  return encoder.encode(secret);
}

/** The secrets to use: one or several (newest first during a rotation), blanks dropped. */
export function secretList(secrets: string | readonly string[]): string[] {
  const list = (typeof secrets === "string" ? [secrets] : [...secrets]).filter(
    (secret) => typeof secret === "string" && secret.trim() !== "",
  );
  if (list.length === 0) {
    throw new ConveyorError(
      "no signing secret given: pass the endpoint's secret (e.g. from an environment variable" +
        " that is set where this code runs)",
    );
  }
  return list;
}

/** The raw HMAC-SHA256 of a delivery under one key. */
export async function hmac(
  key: Uint8Array,
  webhookId: string,
  timestamp: string,
  body: Uint8Array,
): Promise<Uint8Array> {
  const cryptoKey = await crypto.subtle.importKey(
    "raw",
    new Uint8Array(key),
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign"],
  );
  const prefix = encoder.encode(`${webhookId}.${timestamp}.`);
  const signed = new Uint8Array(prefix.length + body.length);
  signed.set(prefix);
  signed.set(body, prefix.length);
  return new Uint8Array(await crypto.subtle.sign("HMAC", cryptoKey, signed));
}

/** The `webhook-signature` header value: one `v1,<base64>` per secret, space-separated. */
export async function signatureHeader(
  secrets: string | readonly string[],
  webhookId: string,
  timestamp: string,
  body: Uint8Array,
): Promise<string> {
  const signatures = await Promise.all(
    secretList(secrets).map(async (secret) => {
      const mac = await hmac(secretKey(secret), webhookId, timestamp, body);
      return `v1,${encodeBase64(mac)}`;
    }),
  );
  return signatures.join(" ");
}

/**
 * Whether any `v1` signature in `header` matches any expected MAC. Every pair is compared,
 * each in constant time, with no early exit: the time taken says nothing about which bytes or
 * which signature matched. Entries of other versions (`v1a,...`) are ignored, as the spec asks.
 */
export function anySignatureMatches(
  expected: readonly Uint8Array[],
  header: string,
  equal: (a: Uint8Array, b: Uint8Array) => boolean = timingSafeEqual,
): boolean {
  let matched = false;
  for (const entry of header.split(" ")) {
    const comma = entry.indexOf(",");
    if (comma < 0 || entry.slice(0, comma) !== "v1") continue;
    const given = decodeBase64(entry.slice(comma + 1));
    if (given === undefined) continue;
    for (const mac of expected) {
      // equal() first: it runs for every pair, even after a match
      matched = equal(given, mac) || matched;
    }
  }
  return matched;
}

/**
 * Compare two byte strings in time that depends only on their lengths (the length of an
 * HMAC-SHA256 is public): every byte is visited, differences are OR-ed together.
 */
export function timingSafeEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let difference = 0;
  for (let index = 0; index < a.length; index++) {
    difference |= (a[index] as number) ^ (b[index] as number);
  }
  return difference === 0;
}

export function encodeBase64(bytes: Uint8Array): string {
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary);
}

function decodeBase64(text: string): Uint8Array | undefined {
  try {
    return Uint8Array.from(atob(text), (char) => char.charCodeAt(0));
  } catch {
    return undefined;
  }
}
