// LIKE/NOT_LIKE clauses of many meters, answered in one pass over each event's text. Testing every clause
// with `includes` costs (clauses × text length) per event: with an organization's 2,000 clauses and
// 1,000-character metadata values, seconds per thousand events. An Aho–Corasick automaton of all the
// patterns on one property finds every pattern present in one scan of the text, whatever their number.
// Ingestion builds one only for calls where that pays off (see `worthIndexing`); results equal `includes`.
//
// Why hand-made and not a library: modern-ahocorasick 3.3.0 (the maintained npm package) was tried and
// rejected. It matches whole grapheme clusters (Intl.Segmenter), not UTF-16 code units, so it answers
// differently from `includes`: "\r" or "\n" is not found in "\r\n", "e" not in "e\u0301", an emoji not
// inside a ZWJ sequence, a surrogate half never (test/like-index.test.ts pins these). It was also slower:
// per 10,000 events against 2,000 patterns of up to 100 characters on 1,000-character values, this
// automaton 360 ms, the library (countByPattern, its fastest "which patterns occur" call) 5.4 s on random
// ASCII, 10.7 s on text with "é" and "猫" (this automaton 564 ms), 2.0 s on the hostile `a`s (631 ms);
// its double-array `/fast` entry was slower still (11–30×). Measured on the shared 2-core machine.
import { isNestedFilter, metadataKeyOf, type FilterClause, type MeterFilter } from "./meter-filter.ts";

/** The event value a clause property reads: the event name, or one metadata key. */
const propertyKey = (property: string) => metadataKeyOf(property) ?? "\u0000name";

class Automaton {
  private next: Map<number, number>[] = [new Map()];
  private fail: number[] = [0];
  /** pattern ids ending at each node */
  private out: number[][] = [[]];
  /** nearest node on the fail chain (excluding itself) that ends a pattern; 0 = none */
  private dict: number[] = [0];
  /** per node: the last scan that reported it (so each output chain is walked once per scan) */
  private seenIn: Uint32Array = new Uint32Array(0);
  patterns = 0;
  /** which patterns the last scan found (stamped with its number) */
  found: Uint32Array = new Uint32Array(0);
  /** the event the last scan was for, and its number */
  scannedFor = 0;
  scanStamp = 0;

  add(pattern: string): number {
    let node = 0;
    for (let i = 0; i < pattern.length; i++) {
      const c = pattern.charCodeAt(i);
      let child = this.next[node].get(c);
      if (child === undefined) {
        child = this.next.length;
        this.next.push(new Map());
        this.fail.push(0);
        this.out.push([]);
        this.dict.push(0);
        this.next[node].set(c, child);
      }
      node = child;
    }
    const id = this.patterns++;
    this.out[node].push(id);
    return id;
  }

  /** Fail and dictionary links, breadth first. */
  build(): void {
    const queue: number[] = [];
    for (const child of this.next[0].values()) queue.push(child);
    for (let q = 0; q < queue.length; q++) {
      const node = queue[q];
      for (const [c, child] of this.next[node]) {
        let f = this.fail[node];
        while (f !== 0 && !this.next[f].has(c)) f = this.fail[f];
        const target = this.next[f].get(c);
        this.fail[child] = target !== undefined && target !== child ? target : 0;
        const fc = this.fail[child];
        this.dict[child] = this.out[fc].length ? fc : this.dict[fc];
        queue.push(child);
      }
    }
    this.seenIn = new Uint32Array(this.next.length);
    this.found = new Uint32Array(this.patterns);
  }

  /** Mark in `found` (stamped with `scan`) every pattern that occurs in `text`. */
  scan(text: string, scan: number, found: Uint32Array): void {
    let node = 0;
    for (let i = 0; i < text.length; i++) {
      const c = text.charCodeAt(i);
      let child = this.next[node].get(c);
      while (child === undefined && node !== 0) {
        node = this.fail[node];
        child = this.next[node].get(c);
      }
      node = child ?? 0;
      for (let o = this.out[node].length ? node : this.dict[node]; o !== 0 && this.seenIn[o] !== scan; o = this.dict[o]) {
        this.seenIn[o] = scan;
        for (const id of this.out[o]) found[id] = scan;
      }
    }
  }
}

/** Where an indexed clause's pattern lives. */
interface Entry {
  automaton: Automaton;
  id: number;
}
/**
 * The LIKE/NOT_LIKE clauses of a set of filters (one ingestion call's meters). Each clause's entry is kept in
 * the index, by the clause object: the meters are shared by every call of their organization and frozen, so
 * nothing may be written onto them.
 */
export class LikeIndex {
  private events = 0;
  private scans = 0;
  private readonly entries = new Map<FilterClause, Entry>();

  constructor(filters: MeterFilter[]) {
    const automata = new Map<string, Automaton>();
    const visit = (filter: MeterFilter) => {
      for (const c of filter.clauses) {
        if (isNestedFilter(c)) visit(c);
        else if ((c.operator === "LIKE" || c.operator === "NOT_LIKE") && typeof c.value === "string" && c.value.length > 0) {
          const key = propertyKey(c.property);
          let automaton = automata.get(key);
          if (!automaton) automata.set(key, (automaton = new Automaton()));
          this.entries.set(c, { automaton, id: automaton.add(c.value) });
        }
      }
    };
    for (const f of filters) visit(f);
    for (const automaton of automata.values()) automaton.build();
  }

  /**
   * A `contains(clause, text)` for one event, where `text` is always the clause's property's value: each
   * property's text is scanned once, on the first clause that asks; clauses this index does not hold fall
   * back to `includes`.
   */
  forEvent(): (clause: FilterClause, text: string) => boolean {
    const event = ++this.events;
    return (clause, text) => {
      const entry = this.entries.get(clause);
      if (entry === undefined) return text.includes(clause.value as string);
      const a = entry.automaton;
      if (a.scannedFor !== event) {
        a.scannedFor = event;
        a.scanStamp = ++this.scans;
        a.scan(text, a.scanStamp, a.found);
      }
      return a.found[entry.id] === a.scanStamp;
    };
  }
}

/** LIKE clauses among filters (nested included). */
export function likeClauses(filters: MeterFilter[]): number {
  let n = 0;
  const visit = (f: MeterFilter) => {
    for (const c of f.clauses) {
      if (isNestedFilter(c)) visit(c);
      else if (c.operator === "LIKE" || c.operator === "NOT_LIKE") n++;
    }
  };
  for (const f of filters) visit(f);
  return n;
}

/**
 * Is an index worth building for `events` events against these filters? Building costs about as much as
 * a few hundred thousand `includes`; below that, testing each clause is cheaper.
 */
export const worthIndexing = (events: number, filters: MeterFilter[]) => events * likeClauses(filters) >= 200_000;
