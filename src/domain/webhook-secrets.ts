// Webhook signing secrets at rest: AES-256-GCM under the node's webhook key, so a copy of the database alone
// (a backup, a read replica, a leaked dump) does not reveal them. The key comes from WEBHOOK_SECRET_KEY, or
// from a key file created on first start (src/webhooks/key.ts); it never enters the database.
import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto";

const VERSION = "v1.";
const IV_BYTES = 12;
const TAG_BYTES = 16;

/** A new Standard Webhooks secret: `whsec_` and 32 random bytes in base64. */
export function newWebhookSecret(): string {
  return `whsec_${randomBytes(32).toString("base64")}`;
}

/** The 32-byte key from its text form: 64 hex characters or base64 of 32 bytes. */
export function parseWebhookKey(text: string, name: string): Buffer {
  const trimmed = text.trim();
  const key = /^[0-9a-f]{64}$/i.test(trimmed) ? Buffer.from(trimmed, "hex") : Buffer.from(trimmed, "base64");
  if (key.length !== 32) throw new Error(`${name} must be 32 bytes as 64 hex characters or base64`);
  return key;
}

export function encryptSecret(key: Buffer, secret: string): string {
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv("aes-256-gcm", key, iv);
  const body = Buffer.concat([cipher.update(secret, "utf8"), cipher.final()]);
  return VERSION + Buffer.concat([iv, cipher.getAuthTag(), body]).toString("base64");
}

/** Throws when the key is not the one the secret was stored under (the tag does not match). */
export function decryptSecret(key: Buffer, stored: string): string {
  if (!stored.startsWith(VERSION)) throw new Error("unknown webhook secret format");
  const raw = Buffer.from(stored.slice(VERSION.length), "base64");
  const decipher = createDecipheriv("aes-256-gcm", key, raw.subarray(0, IV_BYTES));
  decipher.setAuthTag(raw.subarray(IV_BYTES, IV_BYTES + TAG_BYTES));
  return Buffer.concat([decipher.update(raw.subarray(IV_BYTES + TAG_BYTES)), decipher.final()]).toString("utf8");
}
