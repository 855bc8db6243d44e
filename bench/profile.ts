// Summarizes a V8 CPU profile (the service's, written with BENCH_CPU_PROFILE=<folder> npm run bench): self time
// by package (or by our own source file), the heaviest functions by self time and by total time (with what
// they call), so a bench run says where the time went.
//
//   BENCH_CPU_PROFILE=/tmp/prof npm run bench -- --only reads && npx tsx bench/profile.ts /tmp/prof/*.cpuprofile
//   npx tsx bench/profile.ts --window "customerMeter" /tmp/prof/*.cpuprofile
//
// --window <text>: only the samples taken during the measured run whose scenario contains <text> (windows.json,
// which the bench writes beside the profiles), and the CPU time sampled per request of that run.
// --top <n>: lines per list (25).
// A .heapprofile (BENCH_HEAP_PROFILE=<folder>, bench/heap-sampling.ts): the bytes the service allocated during
// the ingest row (or the authorizeUsage row), garbage included, per event (per call), by place and by function.
//   BENCH_HEAP_PROFILE=/tmp/heap npm run bench -- --only ingest && npx tsx bench/profile.ts /tmp/heap/ingest.heapprofile
// The service runs its build (dist/, scripts/build.ts): frames in it are read through the build's source maps,
// so places and lines are those of src/.
import { existsSync, readFileSync } from "node:fs";
import { SourceMap } from "node:module";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number };
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  startTime: number;
  samples: number[];
  timeDeltas: number[];
}
interface Window {
  scenario: string;
  start: number;
  end: number;
  responses: number;
}

/** Where a frame's code lives: an npm package, one of our files, Node's internals, or V8 (GC, idle, program). */
function placeOf(url: string, functionName: string): string {
  if (!url) return `(${functionName || "anonymous"})`;
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (pkg) return pkg[1];
  if (url.startsWith("node:")) return "node internals";
  const own = /\/(src|bench|test)\/(.+)$/.exec(url);
  return own ? `${own[1]}/${own[2]}` : url;
}

const sourceMaps = new Map<string, SourceMap | null>();

/** The frame at its place in src/ when it runs from a built file with a source map beside it; otherwise as it is. */
function originalFrame(callFrame: ProfileNode["callFrame"]): ProfileNode["callFrame"] {
  if (!callFrame.url.startsWith("file:") || !callFrame.url.endsWith(".js")) return callFrame;
  let map = sourceMaps.get(callFrame.url);
  if (map === undefined) {
    const file = `${fileURLToPath(callFrame.url)}.map`;
    map = existsSync(file) ? new SourceMap(JSON.parse(readFileSync(file, "utf8"))) : null;
    sourceMaps.set(callFrame.url, map);
  }
  const entry = map?.findEntry(callFrame.lineNumber, callFrame.columnNumber);
  if (!entry || !("originalSource" in entry)) return callFrame;
  const url = pathToFileURL(path.resolve(path.dirname(fileURLToPath(callFrame.url)), entry.originalSource)).href;
  return { ...callFrame, url, lineNumber: entry.originalLine, columnNumber: entry.originalColumn };
}

function summarize(file: string, top: number, window: Window | null): void {
  const profile = JSON.parse(readFileSync(file, "utf8")) as Profile;
  for (const node of profile.nodes) node.callFrame = originalFrame(node.callFrame);
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const self = new Map<number, number>();
  let at = profile.startTime;
  profile.samples.forEach((id, i) => {
    const delta = profile.timeDeltas[i] ?? 0;
    at += delta;
    if (window && (at < window.start || at > window.end)) return;
    self.set(id, (self.get(id) ?? 0) + delta);
  });
  const total = [...self.values()].reduce((a, b) => a + b, 0);
  if (!total) return;
  const places = new Map<string, number>();
  const functions = new Map<string, number>();
  const inclusive = new Map<string, number>();
  const nameOf = (callFrame: ProfileNode["callFrame"]) => `${callFrame.functionName || "(anonymous)"} ${placeOf(callFrame.url, callFrame.functionName)}:${callFrame.lineNumber + 1}`;
  let busy = 0;
  for (const [id, micros] of self) {
    const { callFrame } = byId.get(id)!;
    if (callFrame.functionName !== "(idle)") busy += micros;
    const place = placeOf(callFrame.url, callFrame.functionName);
    places.set(place, (places.get(place) ?? 0) + micros);
    functions.set(nameOf(callFrame), (functions.get(nameOf(callFrame)) ?? 0) + micros);
    // Total time: each function on the sample's stack once (recursion counted once).
    const seen = new Set<string>();
    for (let n: number | undefined = id; n !== undefined; n = parent.get(n)) {
      const name = nameOf(byId.get(n)!.callFrame);
      if (seen.has(name)) continue;
      seen.add(name);
      inclusive.set(name, (inclusive.get(name) ?? 0) + micros);
    }
  }
  const show = (title: string, map: Map<string, number>) => {
    console.log(`\n${title}`);
    for (const [name, micros] of [...map].sort((a, b) => b[1] - a[1]).slice(0, top)) {
      const perRequest = window ? `  ${(micros / window.responses).toFixed(1).padStart(7)} µs/req` : "";
      console.log(`${((100 * micros) / total).toFixed(1).padStart(6)} %  ${(micros / 1000).toFixed(0).padStart(7)} ms${perRequest}  ${name}`);
    }
  };
  console.log(`${file}: ${(total / 1e6).toFixed(1)} s sampled, ${(busy / 1e6).toFixed(1)} s not idle`);
  if (window) {
    console.log(`window "${window.scenario}": ${window.responses} requests, ${(busy / window.responses).toFixed(0)} µs of this thread's CPU per request`);
  }
  show("self time by place", places);
  show("self time by function", functions);
  show("total time by function (itself and what it calls)", inclusive);
}

interface HeapNode {
  callFrame: ProfileNode["callFrame"];
  selfSize: number;
  children?: HeapNode[];
}

/**
 * A sampling heap profile (BENCH_HEAP_PROFILE, bench/heap-sampling.ts): bytes allocated by place, by function,
 * and by function with what it calls, per event of its row when the row's event count is beside it. A frame
 * of V8's own (a native such as JSON.parse, `(anonymous)`) is named with the function that called it.
 */
function summarizeHeap(file: string, top: number): void {
  const head = (JSON.parse(readFileSync(file, "utf8")) as { head: HeapNode }).head;
  const meta = existsSync(`${file}.json`) ? (JSON.parse(readFileSync(`${file}.json`, "utf8")) as { row: string; events: number }) : null;
  const places = new Map<string, number>();
  const functions = new Map<string, number>();
  const inclusive = new Map<string, number>();
  const add = (map: Map<string, number>, key: string, bytes: number) => map.set(key, (map.get(key) ?? 0) + bytes);
  const nameOf = (f: ProfileNode["callFrame"]) => `${f.functionName || "(anonymous)"} ${placeOf(f.url, f.functionName)}:${f.lineNumber + 1}`;
  let total = 0;
  // Depth first, each node's stack of names beside it (recursion counted once in the inclusive figures).
  const walk = (node: HeapNode, caller: string, stack: string[]) => {
    const frame = originalFrame(node.callFrame);
    const name = frame.url ? nameOf(frame) : `${nameOf(frame)} ← ${caller}`;
    const here = stack.includes(name) ? stack : [...stack, name];
    if (node.selfSize) {
      total += node.selfSize;
      add(places, frame.url ? placeOf(frame.url, frame.functionName) : `(native) ← ${caller}`, node.selfSize);
      add(functions, name, node.selfSize);
      for (const n of here) add(inclusive, n, node.selfSize);
    }
    for (const child of node.children ?? []) walk(child, frame.url ? nameOf(frame) : caller, here);
  };
  walk(head, "(root)", []);
  const per = meta ? meta.events : 1;
  const unit = meta ? "B/event" : "B";
  console.log(`${file}: ${(total / 1e6).toFixed(1)} MB allocated (sampled)${meta ? ` over ${meta.events} events of the ${meta.row} row: ${(total / per).toFixed(0)} B per event` : ""}`);
  const show = (title: string, map: Map<string, number>) => {
    console.log(`\n${title}`);
    for (const [name, bytes] of [...map].sort((a, b) => b[1] - a[1]).slice(0, top)) {
      console.log(`${((100 * bytes) / total).toFixed(1).padStart(6)} %  ${(bytes / per).toFixed(0).padStart(9)} ${unit}  ${name}`);
    }
  };
  show("allocated by place", places);
  show("allocated by function", functions);
  show("allocated by function and what it calls", inclusive);
}

function main(): void {
  const args = process.argv.slice(2);
  let top = 25;
  let windowText: string | null = null;
  const files: string[] = [];
  for (let i = 0; i < args.length; i++) {
    if (args[i] === "--top") top = Number(args[++i]);
    else if (args[i] === "--window") windowText = args[++i];
    else files.push(args[i]);
  }
  if (!files.length || !Number.isInteger(top) || top < 1) {
    console.error("usage: tsx bench/profile.ts [--window <scenario text>] [--top <n>] <file.cpuprofile | file.heapprofile>...");
    process.exit(2);
  }
  for (const f of files) {
    if (f.endsWith(".heapprofile")) {
      summarizeHeap(f, top);
      continue;
    }
    let window: Window | null = null;
    if (windowText !== null) {
      const list = path.join(path.dirname(f), "windows.json");
      if (!existsSync(list)) throw new Error(`--window: no ${list} (written by a bench run with BENCH_CPU_PROFILE)`);
      const windows = JSON.parse(readFileSync(list, "utf8")) as Window[];
      window = windows.find((w) => w.scenario.includes(windowText!)) ?? null;
      if (!window) throw new Error(`--window: no scenario containing "${windowText}" in ${list}: ${windows.map((w) => w.scenario).join("; ")}`);
    }
    summarize(f, top, window);
  }
}

main();
