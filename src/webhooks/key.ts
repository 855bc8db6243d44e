// The key webhook secrets are stored under: WEBHOOK_SECRET_KEY when set (every node of a cluster must share
// it), otherwise a key file (WEBHOOK_SECRET_KEY_FILE, default webhook-secret.key in the SQLite database's folder, ./data/ on PostgreSQL) created with a random
// key on first start, readable by its owner only. The key never enters the database.
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { parseWebhookKey } from "../domain/webhook-secrets.ts";

/** Beside the SQLite database (its data folder); ./data/ for PostgreSQL. */
export function defaultWebhookKeyFile(databaseUrl: string): string {
  const file = databaseUrl.startsWith("file:") ? databaseUrl.slice("file:".length).split("?")[0] : "";
  return path.join(file && file !== ":memory:" ? path.dirname(file) : "./data", "webhook-secret.key");
}

export function loadWebhookKey(fromEnv: string | undefined, file: string): { key: Buffer; source: string; created: boolean } {
  if (fromEnv) return { key: parseWebhookKey(fromEnv, "WEBHOOK_SECRET_KEY"), source: "WEBHOOK_SECRET_KEY", created: false };
  if (existsSync(file)) return { key: parseWebhookKey(readFileSync(file, "utf8"), file), source: file, created: false };
  mkdirSync(path.dirname(file), { recursive: true });
  const key = randomBytes(32);
  // "wx": never overwrite a key another process wrote meanwhile (then that one is read)
  try {
    writeFileSync(file, `${key.toString("hex")}\n`, { mode: 0o600, flag: "wx" });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "EEXIST") return { key: parseWebhookKey(readFileSync(file, "utf8"), file), source: file, created: false };
    throw err;
  }
  return { key, source: file, created: true };
}
