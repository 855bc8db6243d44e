// What every scenario of `npm run bench` gets: the options, both servers, the seeded ids and the books.
import type { Server } from "./harness.ts";
import type { Seeded } from "./seed.ts";
import type { Books } from "./workload.ts";

export interface Options {
  engine: "sqlite" | "postgresql";
  /** seconds per duration-bound autocannon run */
  duration: number;
  /** connections of the request scenarios (reads, authorize, reserve + commit, 1-event ingest) */
  connections: number;
  customers: number;
  meters: number;
  events: number;
  batch: number;
  /** ingest requests in flight for the batch scenario, and sessions of the PostgreSQL floor */
  ingestConnections: number;
  authCustomers: number;
  authCredits: number;
  authCalls: number;
  /** requests of the reserve + commit scenario (half reserves, half commits) */
  reserveCalls: number;
  /** 1-event ingest calls */
  singleCalls: number;
  subscriptions: number;
  /** subscribed customers one ingest call touches at most in the push scenario */
  fanOut: number;
  latencySamples: number;
  seed: number;
  only: Set<string> | null;
}

export interface Context {
  options: Options;
  service: Server;
  floor: Server;
  token: string;
  seeded: Seeded;
  books: Books;
  /** the SQLite file of the service (for the floor's copy of the Event table), or the PostgreSQL URL */
  databaseUrl: string;
  tempDir: string;
  log(line: string): void;
}
