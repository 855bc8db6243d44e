// Summarizes a V8 CPU profile (the service's, written with BENCH_CPU_PROFILE=<folder> npm run bench): self time
// by package (or by our own source file) and the heaviest functions, so a bench run says where the time went.
//
//   BENCH_CPU_PROFILE=/tmp/prof npm run bench -- --only reads && npx tsx bench/profile.ts /tmp/prof/*.cpuprofile
import { readFileSync } from "node:fs";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
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

function summarize(file: string, top = 25): void {
  const profile = JSON.parse(readFileSync(file, "utf8")) as Profile;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map<number, number>();
  profile.samples.forEach((id, i) => self.set(id, (self.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0)));
  const total = [...self.values()].reduce((a, b) => a + b, 0);
  const places = new Map<string, number>();
  const functions = new Map<string, number>();
  for (const [id, micros] of self) {
    const { callFrame } = byId.get(id)!;
    const place = placeOf(callFrame.url, callFrame.functionName);
    places.set(place, (places.get(place) ?? 0) + micros);
    const fn = `${callFrame.functionName || "(anonymous)"} ${place}:${callFrame.lineNumber + 1}`;
    functions.set(fn, (functions.get(fn) ?? 0) + micros);
  }
  const show = (title: string, map: Map<string, number>) => {
    console.log(`\n${title}`);
    for (const [name, micros] of [...map].sort((a, b) => b[1] - a[1]).slice(0, top)) {
      console.log(`${((100 * micros) / total).toFixed(1).padStart(6)} %  ${(micros / 1000).toFixed(0).padStart(7)} ms  ${name}`);
    }
  };
  console.log(`${file}: ${(total / 1e6).toFixed(1)} s sampled`);
  show("self time by place", places);
  show("self time by function", functions);
}

const files = process.argv.slice(2);
if (!files.length) {
  console.error("usage: tsx bench/profile.ts <file.cpuprofile>...");
  process.exit(2);
}
for (const f of files) summarize(f);
