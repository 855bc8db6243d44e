// Statements on a node-postgres client, past Prisma: the hot write paths' transactions on PostgreSQL. Prisma's
// raw API serializes every parameter to JSON and parses it back before the driver sees it, which for the
// one-JSON-parameter bulk statements of src/db/sql.ts (a megabyte per 1,000 events) was the largest cost
// left per event. Values and results keep the shapes Prisma's raw API gives, so the same domain code runs
// on either runner.
import pg, { type Pool, type PoolClient } from "pg";
import { SHARED_VALUES, type RawRunner } from "./sql.ts";

const INT8 = 20;
const TIMESTAMP = 1114;

/**
 * int8 as bigint (Prisma's shape; node-postgres gives strings), and `timestamp` (without time zone, as
 * Prisma's DateTime columns are) as the UTC instant it holds: node-postgres would read it in the process's
 * local time zone.
 */
const types = {
  getTypeParser(oid: number, format?: "text" | "binary") {
    if (oid === INT8) return (text: string) => BigInt(text);
    if (oid === TIMESTAMP) return (text: string) => new Date(`${text.replace(" ", "T")}Z`);
    return pg.types.getTypeParser(oid, format);
  },
} as pg.CustomTypesConfig;

/** Dates as ISO text (node-postgres would write local time), bigints as decimal text. */
function param(value: unknown): unknown {
  if (value instanceof Date) return value.toISOString();
  if (typeof value === "bigint") return value.toString();
  return value;
}

/** Texts named at most, per process (each connection prepares a named text on its first use of it). */
const MAX_NAMED = 256;
/** Texts whose uses are counted at most, per process: past that, a text not counted yet is never named. */
const MAX_COUNTED = 1_024;
/** Longer texts are neither counted nor named (the counted texts are kept: at most 1,024 × 4,000 characters). */
const MAX_TEXT = 4_000;
/** A text is named on this use: texts used once or twice (a rare shape) are never kept by the server. */
const NAMED_FROM_USE = 3;

/**
 * Server-side prepared statements for the texts the hot paths repeat: a named statement is parsed, analyzed
 * and planned once per connection, then only bound and run; an unnamed one is planned on every call. Under 64
 * concurrent authorizations on PostgreSQL (`npm run bench -- --engine postgresql --only authorize`) this
 * doubled the throughput (1,178–1,197 → 2,334–2,479 req/s) and took the service's CPU per request from about
 * 605 to 406–453 µs, with PostgreSQL sharing the machine's two cores.
 */
const uses = new Map<string, number | string>();
/** A text never to name again. */
const UNNAMED = -Infinity;
let named = 0;

/**
 * `col = ANY($n)`: an array parameter. Planned for its values (an unnamed statement, or a named one's first
 * plans), PostgreSQL matches the list through a hash table; in the generic plan it settles on after five
 * runs of a named statement, it scans the whole list for every row: the ingest call's customer lookup (632
 * values against 1,065 customers) went from 0.2 ms (EXPLAIN ANALYZE) to 6. Such texts stay unnamed.
 */
const ARRAY_PARAMETER = /= ANY\(\$\d/;

/**
 * The name of `text` as a prepared statement, or undefined while it stays unnamed. Never named: array
 * parameters (above), and multi-row writes whose shared columns vary from call to call (SHARED_VALUES): their
 * texts are many, and a 1,000-row statement's planning is a small part of its cost.
 */
function nameOf(text: string): string | undefined {
  const used = uses.get(text);
  if (typeof used === "string") return used;
  if (used === undefined && (uses.size >= MAX_COUNTED || text.length > MAX_TEXT || ARRAY_PARAMETER.test(text) || text.includes(SHARED_VALUES))) return undefined;
  const n = (used ?? 0) + 1;
  if (n < NAMED_FROM_USE || named >= MAX_NAMED) {
    uses.set(text, n);
    return undefined;
  }
  const name = `credits_${++named}`;
  uses.set(text, name);
  return name;
}

/** The socket under a node-postgres client (`connection.stream`), when it can be corked. */
interface Corkable {
  cork(): void;
  uncork(): void;
}
const socketOf = (client: PoolClient): Corkable | null => {
  const stream = (client as unknown as { connection?: { stream?: Partial<Corkable> } }).connection?.stream;
  return typeof stream?.cork === "function" && typeof stream.uncork === "function" ? (stream as Corkable) : null;
};
const held = new WeakSet<Corkable>();

/**
 * Hold a pipelined client's writes until the code running now yields to the event loop (`process.nextTick`,
 * which runs once the microtasks queued meanwhile have run): every statement it sends in that time leaves in
 * one write. node-postgres writes each statement on its own, and each write wakes the server's process,
 * which on a small machine takes the CPU from this one at once: a transaction of the group writer (BEGIN, its
 * id, the locking read and the three reads sent behind it, the writes, COMMIT) made about ten writes. Under 64
 * concurrent authorizations the `writev` calls took a quarter of the process's samples, a fifth of them the
 * writer's transactions' (259 samples; 189 with this). Nothing waits longer than the current turn: an awaited
 * statement goes out once the code running now has yielded.
 */
export function coalesceWrites(client: PoolClient): void {
  const socket = socketOf(client);
  if (!socket || held.has(socket)) return;
  held.add(socket);
  socket.cork();
  process.nextTick(() => {
    held.delete(socket);
    socket.uncork();
  });
}

/**
 * Statements on one client (inside its transaction) or on the pool (each on whichever connection is free).
 * `prepared`: repeated texts run as named prepared statements (`nameOf`); off behind a pooler that hands a
 * session's connection to other clients between transactions (`pgbouncer=true` in DATABASE_URL). `coalesce`
 * (a pipelined client): statements sent in one turn leave in one write (`coalesceWrites`).
 */
export function pgRunner(client: PoolClient | Pool, onQuery: ((sql: string) => void) | undefined, prepared: boolean, coalesce = false): RawRunner {
  const run = async (text: string, values: unknown[]) => {
    onQuery?.(text);
    const name = prepared ? nameOf(text) : undefined;
    if (coalesce) coalesceWrites(client as PoolClient);
    try {
      return await client.query({ text, name, values: values.map(param), types });
    } catch (err) {
      // A migration changed what the statement returns (0A000: "cached plan must not change result type"), or
      // the session lost it (26000): the text runs unnamed from now on, and the caller's error stands.
      const code = (err as { code?: unknown }).code;
      if (name && (code === "0A000" || code === "26000")) uses.set(text, UNNAMED);
      throw err;
    }
  };
  return {
    async $queryRawUnsafe<T>(text: string, ...values: unknown[]): Promise<T> {
      return (await run(text, values)).rows as T;
    },
    async $executeRawUnsafe(text: string, ...values: unknown[]): Promise<number> {
      return (await run(text, values)).rowCount ?? 0;
    },
  };
}
