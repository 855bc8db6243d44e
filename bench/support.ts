// Helpers for the benchmarks: options, a seeded PRNG, a GraphQL-over-HTTP client, percentiles and number
// formatting. Nothing here touches the service's internals.

/** `--name=value`, `--name value`, then the NAME environment variable, then the default. */
export function option(name: string): string | undefined {
  const flag = `--${name.toLowerCase().replace(/_/g, "-")}`;
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === flag && i + 1 < argv.length) return argv[i + 1];
    if (a.startsWith(`${flag}=`)) return a.slice(flag.length + 1);
  }
  const env = process.env[name];
  return env === undefined || env === "" ? undefined : env;
}

export function intOption(name: string, fallback: number, min = 1, max = Number.MAX_SAFE_INTEGER): number {
  const raw = option(name);
  if (raw === undefined) return fallback;
  const text = raw.replace(/_/g, "");
  if (!/^\d+$/.test(text)) throw new Error(`${name} must be a whole number, got "${raw}"`);
  const n = Number(text);
  if (n < min || n > max) throw new Error(`${name} must be between ${min} and ${max}, got ${n}`);
  return n;
}

/** mulberry32: a small, fast, seedable PRNG; the same seed gives the same sequence on every run. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** An integer in [0, n). */
export function randomInt(random: () => number, n: number): number {
  return Math.floor(random() * n);
}

/** Nearest-rank percentile (p in 0..100) of unsorted samples. */
export function percentile(samples: number[], p: number): number {
  if (!samples.length) return Number.NaN;
  const sorted = [...samples].sort((a, b) => a - b);
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1];
}

export const thousands = (n: number) => Math.round(n).toLocaleString("en-US");

/** Seconds with 2 significant decimals for short runs, 1 beyond 10 s. */
export const seconds = (ms: number) => (ms < 10_000 ? (ms / 1000).toFixed(2) : (ms / 1000).toFixed(1));

/** Milliseconds: 2 decimals under 10 ms, 1 under 100 ms, whole beyond. */
export function millis(ms: number): string {
  const abs = Math.abs(ms);
  return abs < 10 ? ms.toFixed(2) : abs < 100 ? ms.toFixed(1) : ms.toFixed(0);
}

/** Shortest exact decimal text of a scaled integer: (1250n, 2) → "12.5". Same rendering as the API's Decimal. */
export function decimalText(value: bigint, decimals: number): string {
  const negative = value < 0n;
  const abs = negative ? -value : value;
  const scale = 10n ** BigInt(decimals);
  const fraction = (abs % scale).toString().padStart(decimals, "0").replace(/0+$/, "");
  return `${negative ? "-" : ""}${abs / scale}${fraction ? `.${fraction}` : ""}`;
}

export interface GraphQLResponse<T> {
  data?: T | null;
  errors?: { message: string; path?: unknown; extensions?: Record<string, unknown> }[];
}

/** POST GraphQL over HTTP with a bearer token. */
export function graphqlClient(url: string, token: string) {
  const headers = { "content-type": "application/json", accept: "application/json", authorization: `Bearer ${token}` };
  /** Send a pre-serialized body; returns the raw response text. */
  async function post(body: string): Promise<string> {
    const res = await fetch(url, { method: "POST", headers, body });
    const text = await res.text();
    if (!res.ok) throw new Error(`HTTP ${res.status}: ${text.slice(0, 500)}`);
    return text;
  }
  /** Run an operation and return data; throws on any GraphQL error. */
  async function request<T>(query: string, variables?: Record<string, unknown>): Promise<T> {
    const result = JSON.parse(await post(JSON.stringify({ query, variables }))) as GraphQLResponse<T>;
    if (result.errors?.length || !result.data) throw new Error(`GraphQL errors: ${JSON.stringify(result.errors ?? result).slice(0, 1000)}`);
    return result.data;
  }
  return { post, request };
}

/** Run `work` over the indexes 0..count-1 with at most `concurrency` in flight; stops early on the first error. */
export async function pool(count: number, concurrency: number, work: (index: number) => Promise<void>): Promise<void> {
  let next = 0;
  let failed = false;
  const worker = async () => {
    while (!failed) {
      const i = next++;
      if (i >= count) return;
      try {
        await work(i);
      } catch (err) {
        failed = true;
        throw err;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
}

/** Resolve with `promise`, or reject after `ms` with `what` in the message. */
export function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
    }),
  ]);
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
