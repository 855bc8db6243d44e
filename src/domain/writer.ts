// One writer per node, group commit. The balance-moving writes of the hot paths (ingestEvents, authorizeUsage,
// reserveUsage, commitReservation, releaseReservation) are jobs in one in-process queue per database client.
// Whatever has arrived while a transaction runs is drained into the next one: every job's rows are read
// (and on PostgreSQL locked, in one fixed order) once, each job is decided in arrival order against the
// running balances in memory (BalanceBook), and all accepted work is written with the same few bulk
// statements. Each caller still gets its own answer: a refusal or an invalid request is that caller's
// answer, never its neighbours' failure, because nothing is written until every job has been decided.
//
// The module knows no job in particular: a job's kind (src/domain/ingestion.ts, src/domain/authorization.ts)
// says what to write before the balances are read, which adjustments a job asks for, how to decide it, and
// what to write after.
import type { Db } from "../db/client.ts";
import { PG_WRITER_CONNECTIONS, providerOfDb } from "../db/client.ts";
import type { Sql } from "../db/sql.ts";
import { BalanceBook, type BalanceAdjustment, type BalanceChange } from "./balances.ts";
import type { Notify } from "./notify.ts";
import { CommitOutcomeUnknownError, committedSqlTransaction } from "./transactions.ts";

/** Most jobs one transaction decides. */
export const MAX_GROUP_JOBS = 256;
/** Most events one transaction stores (a single call of more is a group on its own). */
export const MAX_GROUP_EVENTS = 10_000;

/** One caller's write, waiting for its group. */
export interface WriteJob {
  readonly organizationId: string;
  /** who hears of the balances the job's group changed in its organization */
  readonly notify: Notify;
  /** the caller's clock: the group runs at the latest of its jobs' */
  readonly now: Date;
  /** events it stores, counted against MAX_GROUP_EVENTS */
  readonly events: number;
}

/** What the writer needs from every kind of job; `prepare` runs once per kind per attempt of a group. */
export interface JobKind<J extends WriteJob> {
  /** Kinds prepare in increasing order in every group: the order their locks are taken in. */
  readonly order: number;
  /**
   * Write what deciding the jobs depends on (rows that claim unique keys: events, idempotency records) and
   * read what else it needs, in bulk for all of this kind's jobs of the group. Called again for every
   * attempt: it must keep what it learns in what it returns, never in the jobs.
   */
  prepare(sql: Sql, jobs: J[], now: Date): Promise<PreparedJobs<J>>;
}

export interface PreparedJobs<J> {
  /** The adjustments a job may apply: their rows are read and locked with every other job's before any decision. */
  adjustments(job: J): BalanceAdjustment[];
  /**
   * Customers a job stores something for without a balance row among its adjustments (an ingest call's events
   * that match no meter): checked with the rows' customers, so a job of a customer deleted since is refused.
   */
  customers?(job: J): string[];
  /**
   * Decide one job against the book (in the group's order): apply what it does and answer, or throw its
   * error. Either way, what `prepare` wrote for a job that applied nothing is undone by `write`.
   */
  decide(book: BalanceBook, job: J): unknown;
  /**
   * Refused jobs whose rows from `prepare` claimed a unique key that a neighbour in the group also asked for
   * (an idempotency key, an event's externalId): the neighbour was answered as a repeat of a write that is
   * now undone. The group then runs again without them (they keep their answers).
   */
  shadowing(): J[];
  /** After every decision: write what the accepted jobs need beyond the balances, undo what refused ones wrote. */
  write(sql: Sql): Promise<void>;
}

type Outcome = { ok: true; value: unknown } | { ok: false; error: unknown };

interface Pending {
  kind: JobKind<WriteJob>;
  job: WriteJob;
  settled: boolean;
  resolve(value: unknown): void;
  reject(err: unknown): void;
}

function settle(p: Pending, outcome: Outcome): void {
  p.settled = true;
  if (outcome.ok) p.resolve(outcome.value);
  else p.reject(outcome.error);
}

/** Thrown out of an attempt (so it rolls back) when refused jobs shadowed neighbours: see `shadowing`. */
class Regroup extends Error {
  constructor(readonly answered: Map<Pending, Outcome>) {
    super("refused jobs shadowed others; the group runs again without them");
  }
}

class Writer {
  private readonly queue: Pending[] = [];
  private running = 0;
  private held = 0;

  constructor(
    private readonly db: Db,
    /** groups in flight at once */
    private readonly concurrency: number,
  ) {}

  submit(p: Pending): void {
    this.queue.push(p);
    this.pump();
  }

  hold(): { queued(): number; release(): void } {
    this.held++;
    let released = false;
    return {
      queued: () => this.queue.length,
      release: () => {
        if (released) return;
        released = true;
        this.held--;
        this.pump();
      },
    };
  }

  private pump(): void {
    while (this.held === 0 && this.running < this.concurrency && this.queue.length) {
      const group = this.take();
      this.running++;
      void this.run(group).finally(() => {
        this.running--;
        this.pump();
      });
    }
  }

  /** The next group: what waits, oldest first, up to MAX_GROUP_JOBS jobs and MAX_GROUP_EVENTS events. */
  private take(): Pending[] {
    const group: Pending[] = [];
    let events = 0;
    while (this.queue.length && group.length < MAX_GROUP_JOBS) {
      const next = this.queue[0];
      if (group.length && events + next.job.events > MAX_GROUP_EVENTS) break;
      group.push(this.queue.shift()!);
      events += next.job.events;
    }
    return group;
  }

  private async run(group: Pending[]): Promise<void> {
    try {
      await this.commit(group);
    } catch (err) {
      const open = group.filter((p) => !p.settled);
      if (open.length === 1) return settle(open[0], { ok: false, error: err });
      // The group may have committed: trying its jobs again one by one could apply them twice.
      if (err instanceof CommitOutcomeUnknownError) return open.forEach((p) => settle(p, { ok: false, error: err }));
      // Whatever failed the group (a database error, not an answer) is not every caller's failure: each job
      // is tried on its own, so only the one it belongs to sees it.
      for (const p of open) await this.run([p]);
    }
  }

  /**
   * Run the group's transaction (retried whole, every job decided again) and answer its callers once its commit
   * is durable. The group keeps its slot until then: jobs arriving meanwhile form the next group, which then
   * shares the next fsync (letting it start at this one's commit made every group a single job).
   */
  private async commit(group: Pending[]): Promise<void> {
    let jobs = group.filter((p) => !p.settled);
    while (jobs.length) {
      let result: Awaited<ReturnType<Writer["attempt"]>>;
      let durable: Promise<void>;
      try {
        ({ value: result, durable } = await committedSqlTransaction(this.db, (sql) => this.attempt(sql, jobs), true));
      } catch (err) {
        if (!(err instanceof Regroup)) throw err;
        for (const [p, outcome] of err.answered) settle(p, outcome);
        jobs = jobs.filter((p) => !p.settled);
        continue;
      }
      try {
        await durable;
      } catch (error) {
        // Committed but not made durable (the disk failed): no caller is told it was stored, and none is tried
        // again on its own, which would apply its work twice.
        for (const p of jobs) settle(p, { ok: false, error });
        return;
      }
      // Answered first: the group has committed, whatever happens while its subscribers are told.
      jobs.forEach((p, i) => settle(p, result.outcomes[i]));
      this.publish(jobs, result.changes);
      return;
    }
  }

  private async attempt(sql: Sql, jobs: Pending[]): Promise<{ outcomes: Outcome[]; changes: Map<string, BalanceChange[]> }> {
    const now = new Date(Math.max(...jobs.map((p) => p.job.now.getTime())));
    const kinds = [...new Set(jobs.map((p) => p.kind))].sort((a, b) => a.order - b.order);
    const prepared = new Map<JobKind<WriteJob>, PreparedJobs<WriteJob>>();
    for (const kind of kinds) {
      prepared.set(
        kind,
        await kind.prepare(
          sql,
          jobs.filter((p) => p.kind === kind).map((p) => p.job),
          now,
        ),
      );
    }
    const of = (p: Pending) => prepared.get(p.kind)!;
    const book = await BalanceBook.open(
      sql,
      jobs.map((p) => ({ organizationId: p.job.organizationId, adjustments: of(p).adjustments(p.job) })),
      now,
      // Callers looked their customers up before queueing: one deleted since is refused (NOT_FOUND), not written.
      { liveCustomers: true, alsoCustomers: jobs.flatMap((p) => of(p).customers?.(p.job) ?? []) },
    );
    const outcomes = jobs.map((p): Outcome => {
      try {
        return { ok: true, value: of(p).decide(book, p.job) };
      } catch (error) {
        return { ok: false, error };
      }
    });
    const shadowing = new Set(kinds.flatMap((k) => prepared.get(k)!.shadowing()));
    if (shadowing.size) {
      throw new Regroup(new Map(jobs.flatMap((p, i) => (shadowing.has(p.job) ? [[p, outcomes[i]] as const] : []))));
    }
    for (const kind of kinds) await prepared.get(kind)!.write(sql);
    return { outcomes, changes: await book.write() };
  }

  /** One message per organization and transaction (each distinct Notify of its jobs is told once). */
  private publish(jobs: Pending[], changes: Map<string, BalanceChange[]>): void {
    for (const [organizationId, list] of changes) {
      const told = new Set<Notify>();
      for (const p of jobs) {
        if (p.job.organizationId !== organizationId || told.has(p.job.notify)) continue;
        told.add(p.job.notify);
        p.job.notify.balancesChanged(organizationId, list);
      }
    }
  }
}

const writers = new WeakMap<Db, Writer>();

function writerOf(db: Db): Writer {
  let writer = writers.get(db);
  if (!writer) {
    // SQLite has one connection and one writer at a time: one group in flight. PostgreSQL: two, so one
    // group's commit overlaps the next one's statements (groups touching the same rows queue on their locks).
    writers.set(db, (writer = new Writer(db, providerOfDb(db) === "postgresql" ? PG_WRITER_CONNECTIONS : 1)));
  }
  return writer;
}

/** Queue `job` on the node's writer; resolves with its answer once its group has committed. */
export function submit<J extends WriteJob, T>(db: Db, kind: JobKind<J>, job: J): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    writerOf(db).submit({ kind: kind as unknown as JobKind<WriteJob>, job, settled: false, resolve: resolve as (v: unknown) => void, reject });
  });
}

/**
 * Test hook: stop the writer from starting groups until `release`, so the jobs queued meanwhile are drained
 * together (a real group, decided and committed as one). `queued` says how many wait.
 */
export function holdWriter(db: Db): { queued(): number; release(): void } {
  return writerOf(db).hold();
}
