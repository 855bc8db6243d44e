// BENCH_HEAP_PROFILE=<folder>: what the service allocates during a measured row, garbage included. The service
// runs with its inspector on a loopback port (bench/harness.ts); V8's sampling heap profiler is started through
// it right before the row's calls and stopped right after, keeping the samples of objects that minor and major
// collections have freed since (a heap snapshot, or node's --heap-prof, shows only what is still alive).
// The profile goes to <folder>/<row>.heapprofile (Chrome DevTools opens it) with the row's event count beside
// it; `npx tsx bench/profile.ts <file>` prints the bytes allocated per event by place and by function.
// BENCH_HEAP_SURVIVORS=1: keep only the samples of objects no minor collection freed (what outlived a
// scavenge: copied, and at the next one promoted to the old generation, where marking pays for it again).
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import WebSocket from "ws";
import { BenchFailure, type Server } from "./harness.ts";

/** Bytes between samples: fine enough for a 60,000-event row, coarse enough to cost the service little. */
const SAMPLING_INTERVAL = 16_384;

export interface AllocationWindow {
  /** Stop sampling and write the profile; answers its file. */
  stop(events: number): Promise<string>;
}

/** Start sampling the service's allocations for the row `name`; null unless BENCH_HEAP_PROFILE is set. */
export async function allocationWindow(service: Server, name: string): Promise<AllocationWindow | null> {
  const folder = process.env.BENCH_HEAP_PROFILE;
  if (!folder) return null;
  const url = service.inspector();
  if (!url) throw new BenchFailure("BENCH_HEAP_PROFILE: the service printed no inspector URL (started with --inspect)");
  const socket = new WebSocket(url);
  await new Promise<void>((resolve, reject) => {
    socket.once("open", () => resolve());
    socket.once("error", reject);
  });
  let next = 0;
  const pending = new Map<number, { method: string; resolve(result: Record<string, unknown>): void; reject(err: Error): void }>();
  socket.on("message", (data: WebSocket.RawData) => {
    const message = JSON.parse(data.toString()) as { id?: number; result?: Record<string, unknown>; error?: { message: string } };
    const waiting = message.id === undefined ? undefined : pending.get(message.id);
    if (!waiting) return; // an event, not an answer
    pending.delete(message.id!);
    if (message.error) waiting.reject(new BenchFailure(`inspector ${waiting.method}: ${message.error.message}`));
    else waiting.resolve(message.result ?? {});
  });
  // The service gone (it exited, or closed its inspector): what waits for an answer fails instead of hanging.
  socket.on("error", () => {});
  socket.on("close", () => {
    for (const waiting of pending.values()) waiting.reject(new BenchFailure(`inspector ${waiting.method}: the connection closed`));
    pending.clear();
  });
  const call = (method: string, params: Record<string, unknown> = {}) =>
    new Promise<Record<string, unknown>>((resolve, reject) => {
      const id = ++next;
      pending.set(id, { method, resolve, reject });
      socket.send(JSON.stringify({ id, method, params }));
    });
  const survivors = process.env.BENCH_HEAP_SURVIVORS === "1";
  await call("HeapProfiler.startSampling", { samplingInterval: SAMPLING_INTERVAL, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: !survivors });
  return {
    async stop(events) {
      const { profile } = await call("HeapProfiler.stopSampling");
      socket.close();
      mkdirSync(folder, { recursive: true });
      const file = path.join(folder, `${name}.heapprofile`);
      writeFileSync(file, JSON.stringify(profile));
      writeFileSync(`${file}.json`, JSON.stringify({ row: name, events }));
      return file;
    },
  };
}
