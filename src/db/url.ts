// Which engine a DATABASE_URL points at, and what each engine needs before the first connection.
import { existsSync, mkdirSync } from "node:fs";
import path from "node:path";
import type { ClientConfig } from "pg";
import { parseIntoClientConfig } from "pg-connection-string";

export type Provider = "sqlite" | "postgresql";

export const DEFAULT_DATABASE_URL = "file:./data/credits.db";

export function providerOf(url: string): Provider {
  if (/^postgres(ql)?:\/\//.test(url)) return "postgresql";
  if (url.startsWith("file:")) return "sqlite";
  throw new Error(`DATABASE_URL must start with file: (SQLite) or postgresql:// (PostgreSQL), got "${url.split(":")[0]}:…"`);
}

/**
 * The SQLite file a URL names when it does not exist yet (null: it exists, or the URL is PostgreSQL's or in
 * memory): commands that only read or change an existing database refuse it rather than create an empty one.
 */
export function missingSqliteFile(url: string): string | null {
  if (providerOf(url) !== "sqlite") return null;
  const file = url.slice("file:".length).split("?")[0];
  if (!file || file === ":memory:") return null;
  return existsSync(path.resolve(file)) ? null : path.resolve(file);
}

/** SQLite creates the file but not its folder: make sure `file:./data/x.db` can be opened. */
export function ensureSqliteDir(url: string): void {
  if (providerOf(url) !== "sqlite") return;
  const file = url.slice("file:".length).split("?")[0];
  if (file && file !== ":memory:") mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
}

/**
 * node-postgres connection options from a URL, for the migration tooling (it needs them split up, to name the
 * shadow database). Read by node-postgres's own parser, as the server's pools read DATABASE_URL: TLS
 * (`sslmode`, `sslrootcert`, …), a Unix socket (`?host=/dir`), an IPv6 literal and a `?password=` reach the
 * migrations as they reach the server. A connection that cannot be made within 30 s fails, as the server's do.
 */
export function pgConfig(url: string): ClientConfig & { connectionTimeoutMillis: number } {
  return { ...parseIntoClientConfig(url), connectionTimeoutMillis: 30_000 };
}

/**
 * SQLite's `synchronous` setting on the writer (https://sqlite.org/pragma.html#pragma_synchronous). FULL, the
 * default: every commit is on disk before it is acknowledged (an fsync of the WAL, run off the event loop and
 * shared by the commits made before it started: src/db/libsql.ts). NORMAL, in WAL mode: a
 * commit survives the process crashing but the last ones may be lost if the machine loses power; the
 * database is never corrupted either way, and commits cost no fsync. OFF is not offered: a ledger could
 * then be corrupted by a power loss.
 */
export type SqliteSynchronous = "FULL" | "NORMAL" | "EXTRA";

export const isSqliteSynchronous = (value: string): value is SqliteSynchronous => value === "FULL" || value === "NORMAL" || value === "EXTRA";
