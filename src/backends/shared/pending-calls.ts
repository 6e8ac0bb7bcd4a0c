/**
 * The replies a runner link waits for, by call id: an open-addressed table (linear probing, deletion by shifting
 * back, no tombstones) of two arrays that only ever grow, instead of a Map.
 *
 * Why not a Map: V8's Map is a hash table that it replaces with a new one when it grows or shrinks, and the
 * replaced table keeps its entries and a pointer to its successor (for iterators). A link's pending calls go up
 * and down by the dozen, so its Map was replaced every few calls. Once the Map's table had lived long enough to be
 * promoted to the old generation (a plugin idle while the host allocated for others), each replaced table was an
 * old object, dead, pointing at a young one; a scavenge keeps whatever an old object points at, dead or not, until a
 * mark-compact. So every later table, and the call replies in it (each call's closures and promise), survived the
 * scavenges: in the tenants bench 1.1-3.5 MB copied per scavenge, pauses of 5-13 ms instead of ~1 ms, on the thread
 * every tenant's calls wait for (docs/BENCHMARKS.md, "session 14"). Here a slot is cleared when its call is
 * taken, and the arrays are replaced only when the calls waiting reach half of them; the replaced ones are cleared.
 *
 * Ids are the wire's: 1 to 2^32 - 1 (0 is the id of frames that are not calls).
 */
export class PendingCalls<T> {
  /** Each slot's id, 0 when empty. */
  #ids: Uint32Array;
  #values: (T | undefined)[];
  #mask: number;
  #size = 0;

  constructor(capacity = 64) {
    let n = 8;
    while (n < capacity) n *= 2;
    this.#ids = new Uint32Array(n);
    this.#values = new Array<T | undefined>(n).fill(undefined);
    this.#mask = n - 1;
  }

  get size(): number {
    return this.#size;
  }

  /** Waits for `id`'s reply; an id already waiting is a caller's mistake (the link skips ids still waiting). */
  add(id: number, value: T): void {
    if (!Number.isInteger(id) || id < 1 || id > 0xffff_ffff)
      throw new RangeError(`call id ${id} is not 1 to 2^32 - 1`);
    if ((this.#size + 1) * 2 > this.#ids.length) this.#grow();
    let i = id & this.#mask;
    while (this.#ids[i] !== 0) {
      if (this.#ids[i] === id) throw new Error(`call id ${id} is already waiting`);
      i = (i + 1) & this.#mask;
    }
    this.#ids[i] = id;
    this.#values[i] = value;
    this.#size++;
  }

  has(id: number): boolean {
    return this.#find(id) >= 0;
  }

  /** The reply waiting for `id`, taken out of the table; undefined when none waits. */
  take(id: number): T | undefined {
    let i = this.#find(id);
    if (i < 0) return undefined;
    const value = this.#values[i];
    // Linear probing without tombstones: the entries after the hole that probed past it move back into it.
    const ids = this.#ids;
    const mask = this.#mask;
    let j = i;
    for (;;) {
      j = (j + 1) & mask;
      const other = ids[j] as number;
      if (other === 0) break;
      const home = other & mask;
      // `other` stays where it is when its home lies cyclically in (i, j]: its probe never passed the hole.
      if (i <= j ? i < home && home <= j : i < home || home <= j) continue;
      ids[i] = other;
      this.#values[i] = this.#values[j];
      i = j;
    }
    ids[i] = 0;
    this.#values[i] = undefined;
    this.#size--;
    return value;
  }

  /** Every reply waiting, taken out (the link's end). */
  drain(): T[] {
    const out: T[] = [];
    for (let i = 0; i < this.#ids.length; i++)
      if (this.#ids[i] !== 0) {
        out.push(this.#values[i] as T);
        this.#ids[i] = 0;
        this.#values[i] = undefined;
      }
    this.#size = 0;
    return out;
  }

  #find(id: number): number {
    // An empty slot holds 0: a reply a runner sends under id 0 (or any id the wire cannot carry) waits for nothing.
    if (!(id >= 1 && id <= 0xffff_ffff)) return -1;
    const ids = this.#ids;
    let i = id & this.#mask;
    for (;;) {
      const at = ids[i] as number;
      if (at === id) return i;
      if (at === 0) return -1;
      i = (i + 1) & this.#mask;
    }
  }

  #grow(): void {
    const ids = this.#ids;
    const values = this.#values;
    const n = ids.length * 2;
    this.#ids = new Uint32Array(n);
    this.#values = new Array<T | undefined>(n).fill(undefined);
    this.#mask = n - 1;
    this.#size = 0;
    for (let i = 0; i < ids.length; i++)
      if (ids[i] !== 0) {
        this.add(ids[i] as number, values[i] as T);
        // The old array is garbage now, but an old-generation garbage array still keeps its young values past
        // scavenges: cleared, it keeps nothing.
        values[i] = undefined;
      }
  }
}
