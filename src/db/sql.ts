// Hand-written SQL for the hot paths (ingestion, balance updates), where one multi-row statement replaces
// hundreds of ORM calls. The same statements run on SQLite and PostgreSQL; only placeholders and a few
// clauses differ, and this file owns those differences.
import type { Provider } from "./url.ts";

/** A DateTime column's value as read: PostgreSQL's driver gives a Date, SQLite keeps ISO text. */
export const asDate = (v: Date | string): Date => (v instanceof Date ? v : new Date(v));

/** Anything with Prisma's raw methods: the client or an interactive transaction. */
export interface RawRunner {
  $queryRawUnsafe<T = unknown>(query: string, ...values: unknown[]): Promise<T>;
  $executeRawUnsafe(query: string, ...values: unknown[]): Promise<number>;
  /** The first row only, where the runner can fetch just that (the SQLite reader); else `first` takes the query's first. */
  queryFirst?<T = unknown>(query: string, values: unknown[]): Promise<T | undefined>;
}

/**
 * Rows per multi-row statement on SQLite: well under its 32,766 parameters. A power of two, as every SQLite
 * chunk and list is (see `powerOfTwoChunks` and `Sql.padded`).
 */
const ROWS_PER_STATEMENT = 256;
/** The longest `IN` list of one SQLite statement `inChunks` makes (a power of two). */
const SQLITE_IN_LIST = 1024;
/** Rows per statement on PostgreSQL (one JSON parameter whatever the count). */
const PG_ROWS_PER_STATEMENT = 5000;
/** SQLite `valuesList` texts by shape (rows × 1024 + columns): built once each. */
const sqliteValuesLists = new Map<number, string>();
/** Column types by table; the schema is the one this code was migrated with. */
const columnTypeCache = new Map<string, Map<string, string>>();

/**
 * The chunk sizes `count` rows go in on SQLite: `max` while that many are left, then the remainder's binary
 * digits, largest first (1,000 rows: 256, 256, 256, 128, 64, 32, 8). See `Sql.padded` for why.
 */
export function powerOfTwoChunks(count: number, max: number): number[] {
  const out: number[] = [];
  let left = count;
  while (left >= max) {
    out.push(max);
    left -= max;
  }
  for (let size = max >> 1; size >= 1; size >>= 1) if (left & size) out.push(size);
  return out;
}

/**
 * A PostgreSQL `text[]` literal of `list`, to bind as one text parameter cast `::text[]`: every element quoted,
 * with `"` and `\\` escaped, so no value (empty, `NULL`, commas, braces) is read as anything but itself. Text
 * rather than a JavaScript array, so that it binds the same on node-postgres and through Prisma's raw API.
 */
export function textArray(list: readonly string[]): string {
  let out = "{";
  for (let i = 0; i < list.length; i++) {
    const v = list[i];
    out += `${i ? "," : ""}"${/["\\]/.test(v) ? v.replace(/["\\]/g, "\\$&") : v}"`;
  }
  return `${out}}`;
}

/** A DateTime as Prisma stores it on SQLite: ISO text with an explicit offset. */
export function sqliteDateText(value: Date): string {
  return sqliteIsoText(value.toISOString());
}

/** The same from an instant's ISO text (`…Z`), for callers that hold the text (the bench's raw floor). */
export function sqliteIsoText(iso: string): string {
  return iso.replace("Z", "+00:00");
}

/** Marks a multi-row statement whose rows share some values as parameters of their own (Sql.rowSource). */
export const SHARED_VALUES = "/* values shared by every row */";

/**
 * The values of `rows` (each of `width` values) in one array, row after row: what `rows.flat()` gives, in one
 * allocation of the final size (flat grows its result as it goes; an insert of 1,000 events has 12,000 values).
 */
export function flatRows(rows: readonly (readonly unknown[])[], width: number): unknown[] {
  // oxlint-disable-next-line unicorn/no-new-array -- a length: the array is filled right below
  const out = new Array<unknown>(rows.length * width);
  let n = 0;
  for (const row of rows) for (let i = 0; i < width; i++) out[n++] = row[i];
  return out;
}

export class Sql {
  /** Statements `send` sent whose answers nobody has awaited yet. */
  private unsettled: Promise<unknown>[] = [];

  constructor(
    readonly runner: RawRunner,
    readonly provider: Provider,
    /**
     * The transaction awaits what `send` sent when it commits (committedSqlTransaction, src/domain/transactions.ts):
     * on PostgreSQL its COMMIT follows those statements on the connection without waiting for their answers.
     * Otherwise `flush` awaits them.
     */
    readonly settledAtCommit = false,
  ) {}

  /**
   * Run a write whose answer nothing after it needs, without waiting for it: on PostgreSQL's pipelined
   * connection (src/domain/transactions.ts) the next statement, or the COMMIT, is sent right behind it, and the
   * server runs them in order. A failure fails the transaction: `settle` (or the commit) throws it.
   */
  send(text: string, values: unknown[] = []): void {
    const answer = this.execute(text, values);
    answer.catch(() => {}); // observed by settle
    this.unsettled.push(answer);
  }

  /** Await every statement `send` sent; throws the first failure among them (the one that aborted the transaction). */
  async settle(): Promise<void> {
    while (this.unsettled.length) await Promise.all(this.unsettled.splice(0));
  }

  /** What a transaction that does not settle at its commit must do before it commits: `settle`. */
  async flush(): Promise<void> {
    if (!this.settledAtCommit) await this.settle();
  }

  /**
   * After `work` failed: the first failure among the statements `send` sent, once all have answered. On
   * PostgreSQL a failed statement aborts the transaction and every later one fails with "current transaction
   * is aborted"; the first failure (a deadlock, say, which is retried) is the one to report.
   */
  async firstFailure(): Promise<unknown> {
    const settled = await Promise.allSettled(this.unsettled.splice(0));
    const failed = settled.find((r) => r.status === "rejected");
    return failed ? (failed as PromiseRejectedResult).reason : undefined;
  }

  /** `?` on SQLite, `$n` on PostgreSQL (n from 1). */
  param(n: number): string {
    return this.provider === "postgresql" ? `$${n}` : "?";
  }

  /** A value for a DateTime column: Prisma stores SQLite dates as ISO text with an explicit offset. */
  date(value: Date): Date | string {
    return this.provider === "postgresql" ? value : sqliteDateText(value);
  }

  /** A value for a Json column. */
  json(value: unknown): string {
    return JSON.stringify(value);
  }

  /**
   * A Json column's object (or array) in the rows of a multi-row write (`insertMany`, `insertNew`,
   * `updateById`): on PostgreSQL the object itself, which travels inside the rows' JSON as it is, not as JSON
   * text inside JSON (escaped by the driver's side, then parsed twice by the server's: 1,000 events' insert
   * took 2–3 ms less of the server's time); on SQLite its JSON text. Every row gives that column an object.
   */
  jsonRow(value: object): unknown {
    return this.provider === "postgresql" ? value : JSON.stringify(value);
  }

  /** `FOR UPDATE` where rows can be locked (PostgreSQL); SQLite transactions already hold the write lock. */
  get forUpdate(): string {
    return this.provider === "postgresql" ? " FOR UPDATE" : "";
  }

  /**
   * Serialize this transaction with every other one that locks any of the same keys, until it ends. PostgreSQL:
   * transaction-scoped advisory locks, taken in one order so two lockers never deadlock. SQLite: nothing to
   * do, a write transaction already excludes every other writer. `shared`: only against exclusive lockers of
   * the same keys (many shared lockers hold a key at once).
   */
  async lockKeys(keys: string[], shared = false): Promise<void> {
    if (this.provider !== "postgresql" || !keys.length) return;
    const lock = shared ? "pg_advisory_xact_lock_shared" : "pg_advisory_xact_lock";
    await this.query(
      // COUNT of the text of each (void) result: one plain row back, which Prisma's raw API can also read.
      `SELECT COUNT(${lock}(k)::text) AS "locked" FROM (SELECT DISTINCT hashtextextended(x, 0) AS k FROM jsonb_array_elements_text(${this.param(1)}::jsonb) AS x ORDER BY 1) AS keys`,
      [JSON.stringify(keys)],
    );
  }

  query<T>(text: string, values: unknown[] = []): Promise<T[]> {
    return this.runner.$queryRawUnsafe<T[]>(text, ...values);
  }

  /** The first row of a query (undefined: none), for a statement that returns one row (`LIMIT 1`, a key). */
  async first<T>(text: string, values: unknown[] = []): Promise<T | undefined> {
    if (this.runner.queryFirst) return this.runner.queryFirst<T>(text, values);
    return (await this.query<T>(text, values))[0];
  }

  execute(text: string, values: unknown[] = []): Promise<number> {
    return this.runner.$executeRawUnsafe(text, ...values);
  }

  /**
   * On SQLite, `list` repeated at its end up to the next power of two (unchanged on PostgreSQL), for lists
   * whose repeats change nothing: the values of an IN, the keys of a CASE.
   *
   * Why: SQLite runs each statement text from a statement prepared once and kept by the connection
   * (src/db/libsql.ts), and a statement with one parameter per value is another text for every count. A
   * prepared statement takes memory in proportion to its parameters (a 400-row INSERT about 700 kB), so
   * counts as they come kept hundreds of them, more the longer the process ingested: 156 MB of the writer's
   * after 240,000 events in the bench. Padded lists and power-of-two chunks of rows (`insertMany`,
   * `updateById`) leave each statement at most a dozen texts.
   */
  padded<T>(list: T[]): T[] {
    if (this.provider === "postgresql" || list.length <= 1) return list;
    let size = 1;
    while (size < list.length) size <<= 1;
    if (size === list.length) return list;
    const out = list.slice();
    const last = list[list.length - 1];
    while (out.length < size) out.push(last);
    return out;
  }

  /**
   * Consecutive slices of `list` for `IN` lists of `max` items at most: on SQLite power-of-two sizes up to 1,024
   * (a 1,410-pair list padded to 2,048 made SQLite look up 638 pairs for nothing; see `padded`).
   */
  inChunks<T>(list: T[], max: number): T[][] {
    return this.slices(list, max, SQLITE_IN_LIST);
  }

  /** Consecutive slices of `rows`, one per statement: power-of-two sizes on SQLite (see `padded`). */
  private chunks<T>(rows: T[]): T[][] {
    return this.slices(rows, PG_ROWS_PER_STATEMENT, ROWS_PER_STATEMENT);
  }

  /** Consecutive slices of `list`: at most `pgMax` long on PostgreSQL, power-of-two sizes up to `sqliteMax` on SQLite. */
  private slices<T>(list: T[], pgMax: number, sqliteMax: number): T[][] {
    if (this.provider === "postgresql") {
      const out: T[][] = [];
      for (let i = 0; i < list.length; i += pgMax) out.push(list.slice(i, i + pgMax));
      return out;
    }
    let at = 0;
    return powerOfTwoChunks(list.length, sqliteMax).map((size) => list.slice(at, (at += size)));
  }

  /** `(p1, p2, …), (…)` for `rows` rows of `columns` values, numbering from `start`. */
  valuesList(rows: number, columns: number, start = 1): string {
    // SQLite's parameters are all `?`: the text depends on the shape alone, and the shapes are few (padded).
    if (this.provider !== "postgresql") {
      const key = rows * 1024 + columns;
      let text = sqliteValuesLists.get(key);
      if (text === undefined) {
        const row = `(${Array.from({ length: columns }, () => "?").join(", ")})`;
        text = Array.from({ length: rows }, () => row).join(", ");
        if (sqliteValuesLists.size < 256) sqliteValuesLists.set(key, text);
      }
      return text;
    }
    const groups: string[] = [];
    let n = start;
    for (let r = 0; r < rows; r++) {
      const ps: string[] = [];
      for (let c = 0; c < columns; c++) ps.push(this.param(n++));
      groups.push(`(${ps.join(", ")})`);
    }
    return groups.join(", ");
  }

  /**
   * The rows of a multi-row INSERT: `VALUES (…), …` with one parameter per value on SQLite. On PostgreSQL all
   * rows travel as one JSON text parameter, unpacked by `jsonb_array_elements` and cast per column: the
   * driver and Prisma's runtime handle one string instead of thousands of values (measured 3.5× faster to
   * bind than per-column arrays). On node-postgres, `UNNEST` of one array per column was measured again
   * (1,000 ledger rows, 2026-12-06): about the same backend CPU (8.3–9.7 ms against 9.3 ms), more in the client
   * (4.3–4.7 ms against 3.4–3.7 ms), so the rows stay one JSON text. Dates become ISO text (read back as
   * UTC), bigints decimal text; a Json column's values are JSON text, parsed by PostgreSQL, or objects in every
   * row (`jsonRow`), taken as they are.
   */
  private async rowSource(table: string, columns: string[], rows: unknown[][]): Promise<{ text: string; values: unknown[] }> {
    if (this.provider !== "postgresql") return { text: `VALUES ${this.valuesList(rows.length, columns.length)}`, values: flatRows(rows, columns.length) };
    const types = await this.columnTypes(table);
    // Bigints as decimal text and dates as ISO text, converted here: JSON.stringify then stays on its fast
    // path (no replacer, no toJSON calls; measured 4× faster). Rows repeat the same Date object (the
    // transaction's now), so the last conversion is reused.
    let lastDate: Date | null = null;
    let lastIso = "";
    const text = (v: unknown) => {
      if (typeof v === "bigint") return v.toString();
      if (!(v instanceof Date)) return v;
      if (v !== lastDate) [lastDate, lastIso] = [v, v.toISOString()];
      return lastIso;
    };
    // A column with one value in every row (the organization, the transaction's now, an entry's kind, a null)
    // travels once, as a parameter of its own, instead of in every row's JSON: less text to build, send and
    // parse (a ledger row has four or five such columns of its nineteen).
    const varying: number[] = [];
    const values: unknown[] = [null];
    const select = columns.map((c, i) => {
      const type = types.get(c) ?? "text";
      const first = rows[0]?.[i];
      const objects = (type === "jsonb" || type === "json") && typeof first === "object" && first !== null;
      if (objects && !rows.every((r) => typeof r[i] === "object" && r[i] !== null)) {
        throw new Error(`rowSource: column "${c}" of "${table}" mixes objects (jsonRow) with other values`);
      }
      if (rows.length > 1 && rows.every((r) => r[i] === first)) {
        if (first === null || first === undefined) return `NULL::${type}`;
        // one object for every row: its JSON text (node-postgres would send an array as a PostgreSQL array)
        values.push(objects ? JSON.stringify(first) : text(first));
        return `$${values.length}::${type}`;
      }
      varying.push(i);
      // a Json column given objects (jsonRow) takes them as they are; JSON text is parsed
      if (objects) return `(r->${varying.length - 1})::${type}`;
      return `(r->>${varying.length - 1})::${type}`;
    });
    values[0] = JSON.stringify(rows.map((r) => varying.map((i) => text(r[i]))));
    // Which columns are shared varies from call to call: marked, such texts are never counted or named as
    // prepared statements (src/db/pg.ts), whose budget of texts they would otherwise fill.
    const shared = varying.length < columns.length ? `${SHARED_VALUES} ` : "";
    return { text: `SELECT ${shared}${select.join(", ")} FROM jsonb_array_elements($1::jsonb) AS r`, values };
  }

  /** PostgreSQL types of a table's columns, for the casts of `rowSource` (read once per table per process). */
  private async columnTypes(table: string): Promise<Map<string, string>> {
    let types = columnTypeCache.get(table);
    if (!types) {
      const found = await this.query<{ column_name: string; udt_name: string }>(
        `SELECT "column_name", "udt_name" FROM information_schema.columns WHERE "table_name" = $1 AND "table_schema" = current_schema()`,
        [table],
      );
      types = new Map(found.map((c) => [c.column_name, c.udt_name]));
      columnTypeCache.set(table, types);
    }
    return types;
  }

  /**
   * INSERT many rows in as few statements as the parameter limits allow. `suffix` is appended verbatim
   * (ON CONFLICT …, RETURNING …); returned rows of every chunk are concatenated.
   */
  async insertMany<T = never>(table: string, columns: string[], rows: unknown[][], suffix = "", options: { send?: boolean } = {}): Promise<T[]> {
    const out: T[] = [];
    const head = `INSERT INTO "${table}" (${columns.map((c) => `"${c}"`).join(", ")}) `;
    for (const chunk of this.chunks(rows)) {
      const source = await this.rowSource(table, columns, chunk);
      const text = head + source.text + (suffix ? ` ${suffix}` : "");
      if (/\bRETURNING\b/i.test(suffix)) out.push(...(await this.query<T>(text, source.values)));
      else if (options.send) this.send(text, source.values);
      else await this.execute(text, source.values);
    }
    return out;
  }

  /**
   * UPDATE rows found by their first column (`id`), setting the other columns to the row's values: one
   * statement per chunk, `UPDATE … FROM` the rows (PostgreSQL: the JSON parameter; SQLite: VALUES).
   */
  async updateById(table: string, columns: string[], rows: unknown[][], options: { send?: boolean } = {}): Promise<void> {
    const [key, ...rest] = columns;
    const run = (text: string, values: unknown[]) => (options.send ? this.send(text, values) : this.execute(text, values));
    for (const chunk of this.chunks(rows)) {
      if (this.provider === "postgresql") {
        const source = await this.rowSource(table, columns, chunk);
        const set = rest.map((c, j) => `"${c}" = r."${j + 1}"`).join(", ");
        const names = columns.map((_, j) => `"${j}"`).join(", ");
        await run(`UPDATE "${table}" AS t SET ${set} FROM (${source.text}) AS r (${names}) WHERE t."${key}" = r."0"`, source.values);
      } else {
        const set = rest.map((c, j) => `"${c}" = v.column${j + 2}`).join(", ");
        await run(
          `UPDATE "${table}" SET ${set} FROM (VALUES ${this.valuesList(chunk.length, columns.length)}) AS v WHERE "${table}"."${key}" = v.column1`,
          flatRows(chunk, columns.length),
        );
      }
    }
  }

  /**
   * INSERT … ON CONFLICT DO NOTHING for rows whose first column is a fresh id, answering which ids were
   * inserted. RETURNING costs a fifth of the insert, so a chunk pays for the follow-up lookup only when it
   * actually met a conflict.
   */
  async insertNew(table: string, columns: string[], rows: unknown[][], conflict: string): Promise<Set<unknown>> {
    const inserted = new Set<unknown>();
    const head = `INSERT INTO "${table}" (${columns.map((c) => `"${c}"`).join(", ")}) `;
    for (const chunk of this.chunks(rows)) {
      const source = await this.rowSource(table, columns, chunk);
      const count = await this.execute(`${head}${source.text} ON CONFLICT ${conflict} DO NOTHING`, source.values);
      if (count === chunk.length) {
        for (const row of chunk) inserted.add(row[0]);
        continue;
      }
      for (let j = 0; j < chunk.length; j += ROWS_PER_STATEMENT) {
        const ids = this.padded(chunk.slice(j, j + ROWS_PER_STATEMENT).map((r) => r[0]));
        const found = await this.query<{ id: unknown }>(`SELECT "${columns[0]}" AS "id" FROM "${table}" WHERE ${this.inList(columns[0], ids.length)}`, ids);
        for (const r of found) inserted.add(r.id);
      }
    }
    return inserted;
  }

  /**
   * `("a", "b") IN (…)` for (customer, meter)-style pairs, with the values to bind from parameter `start`:
   * two parameters a pair on SQLite (the pairs `padded`), one JSON parameter for all of them on PostgreSQL.
   */
  pairsIn(a: string, b: string, pairs: { customerId: string; meterId: string }[], start = 1): { clause: string; values: unknown[] } {
    return this.tuplesIn(
      a,
      b,
      pairs.map((p) => [p.customerId, p.meterId]),
      start,
    );
  }

  /** `("a", "b") IN (…)` for any pairs of strings, as `pairsIn`. */
  tuplesIn(a: string, b: string, tuples: [string, string][], start = 1): { clause: string; values: unknown[] } {
    if (this.provider === "postgresql") {
      return {
        clause: `("${a}", "${b}") IN (SELECT r->>0, r->>1 FROM jsonb_array_elements(${this.param(start)}::jsonb) AS r)`,
        values: [JSON.stringify(tuples)],
      };
    }
    const list = this.padded(tuples);
    return { clause: `("${a}", "${b}") IN (VALUES ${this.valuesList(list.length, 2, start)})`, values: flatRows(list, 2) };
  }

  /** DELETE the rows of `table` whose `id` is in `ids`, in chunks; answers how many went. */
  async deleteIds(table: string, ids: string[]): Promise<number> {
    let deleted = 0;
    for (let i = 0; i < ids.length; i += ROWS_PER_STATEMENT) {
      const chunk = this.textIn("id", ids.slice(i, i + ROWS_PER_STATEMENT));
      deleted += await this.execute(`DELETE FROM "${table}" WHERE ${chunk.clause}`, chunk.values);
    }
    return deleted;
  }

  /**
   * `"col" IN (…)` for a list of strings, with the values to bind from parameter `start`: one parameter each on
   * SQLite (the list `padded`), on PostgreSQL one parameter for all of them, a `text[]` literal (`textArray`)
   * matched with `= ANY`. An empty list matches nothing.
   *
   * Why not `IN (SELECT jsonb_array_elements_text($n))`: the planner cannot see how many values a set-returning
   * function gives, and a table without statistics yet (customers created in the last minute, before
   * autovacuum analyzed them) made it rerun the function for every row of the table: 120 ms per ingest call of
   * 1,000 events over 1,000 new customers, against 0.4 ms. An array parameter is a constant of the plan
   * (node-postgres plans each statement with its values), which PostgreSQL either looks up in the column's
   * index, value by value, or hashes once and tests each row against: cheap with or without statistics.
   */
  textIn(column: string, list: string[], start = 1): { clause: string; values: unknown[] } {
    if (!list.length) return { clause: "1 = 0", values: [] };
    if (this.provider === "postgresql") return { clause: `"${column}" = ANY(${this.param(start)}::text[])`, values: [textArray(list)] };
    const values = this.padded(list);
    return { clause: this.inList(column, values.length, start), values };
  }

  /** `"col" IN (…)` with parameters starting at `start` (on SQLite, for `count` from `padded`). */
  inList(column: string, count: number, start = 1): string {
    const ps: string[] = [];
    for (let i = 0; i < count; i++) ps.push(this.param(start + i));
    return `"${column}" IN (${ps.join(", ")})`;
  }
}
