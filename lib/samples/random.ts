/**
 * A small seeded pseudo-random source for the sample generators (Plex trees, tautulli.db files):
 * the same seed gives the same sample, so a failing test or a benchmark run can be reproduced
 * exactly.
 */

export class SampleRandom {
  private state: number;

  constructor(seed: number) {
    this.state = seed >>> 0 || 0x9e3779b9;
  }

  /** A float in [0, 1) (mulberry32). */
  next(): number {
    let t = (this.state = (this.state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** An integer in [min, max]. */
  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }

  /** True with probability `p`. */
  chance(p: number): boolean {
    return this.next() < p;
  }

  pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.next() * items.length)];
  }

  /** `count` lowercase hex digits. */
  hex(count: number): string {
    let out = "";
    while (out.length < count)
      out += Math.floor(this.next() * 0x100000000)
        .toString(16)
        .padStart(8, "0");
    return out.slice(0, count);
  }

  /** `count` characters of [A-Za-z0-9_-] (token-like). */
  token(count: number): string {
    const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";
    let out = "";
    for (let i = 0; i < count; i++) out += alphabet[Math.floor(this.next() * alphabet.length)];
    return out;
  }

  /** `count` words from `words` joined by `separator`. */
  words(words: readonly string[], count: number, separator = " "): string {
    const out: string[] = [];
    for (let i = 0; i < count; i++) out.push(this.pick(words));
    return out.join(separator);
  }
}
