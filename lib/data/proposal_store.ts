// Proposal store: an append-only record log plus an on-disk hash index (docs/proposal-store.md).
// Appends survive interrupts (a torn tail record fails its CRC and is cut off on reopen); the
// index is rebuilt from the log whenever it does not describe the log's current length.
// Opening reads only headers; a lookup is one or two small preads, whatever the store's size.
import * as fs from 'fs';
import * as path from 'path';
import * as zlib from 'zlib';

const LOG_MAGIC = 'SOCOPRP1';
const IDX_MAGIC = 'SOCOIDX1';
const REC_MAGIC = 0x63655250; // 'PRec'
const REC_HEADER = 32;
const IDX_HEADER = 32;
const SLOT = 16;

export enum RecordStatus { Ok = 0, Failed = 1 }

export interface StoreMeta {
  /** Free-form generation settings (preset, scale, sigma, minSize, filter, maxSide, root...). */
  [k: string]: unknown;
}

export interface ProposalRecord {
  key: string;
  status: RecordStatus;
  /** x0, y0, x1, y1 (exclusive), 4 per box; empty for failures. */
  boxes: Int32Array;
  /** Image size (0 when unknown, e.g. imported from JSON). */
  width: number;
  height: number;
  rawCount: number;
  uniqueCount: number;
  filterStage: number;
  /** Milliseconds spent on the image (decode + search); 0 when unknown. */
  millis: number;
  /** Why the image failed (status Failed). */
  reason?: string;
}

export type NewRecord = Omit<ProposalRecord, 'key' | 'status' | 'boxes' | 'reason'> & { boxes: ArrayLike<number> };

const crcOf = (b: Uint8Array): number => zlib.crc32(b) >>> 0;

// Two independent 32-bit string hashes (FNV-1a and a murmur-style mix) over UTF-8 bytes.
function hashKey(bytes: Uint8Array): [number, number] {
  let h1 = 0x811c9dc5, h2 = 0x9747b28c;
  for (let i = 0; i < bytes.length; i++) {
    h1 = Math.imul(h1 ^ bytes[i], 0x01000193);
    h2 = Math.imul(h2 ^ bytes[i], 0x5bd1e995);
    h2 ^= h2 >>> 15;
  }
  h2 = Math.imul(h2 ^ (h2 >>> 13), 0xc2b2ae35);
  h2 ^= h2 >>> 16;
  return [h1 >>> 0, (h2 | 1) >>> 0]; // h2 != 0 marks a used slot
}

function encodeRecord(key: string, status: RecordStatus, r: Partial<NewRecord> & { boxes?: ArrayLike<number> }, reason?: string): Buffer {
  const kb = Buffer.from(key, 'utf8');
  if (kb.length === 0 || kb.length > 0xffff) throw new Error(`proposal store: key length ${kb.length} out of range (1..65535 bytes)`);
  const boxes = r.boxes ?? [];
  if (boxes.length % 4 !== 0) throw new Error(`proposal store: ${key}: boxes length ${boxes.length} is not a multiple of 4`);
  const n = status === RecordStatus.Ok ? boxes.length / 4 : 0;
  const rb = status === RecordStatus.Failed ? Buffer.from(reason ?? 'unknown', 'utf8').subarray(0, 0xffff) : Buffer.alloc(0);
  const len = REC_HEADER + kb.length + n * 8 + rb.length + 4;
  const b = Buffer.alloc(len);
  b.writeUInt32LE(REC_MAGIC, 0);
  b.writeUInt32LE(len, 4);
  b.writeUInt16LE(kb.length, 8);
  b.writeUInt8(status, 10);
  b.writeInt8(Math.max(-128, Math.min(127, r.filterStage ?? -1)), 11);
  b.writeUInt32LE(n, 12);
  b.writeUInt16LE(r.width ?? 0, 16);
  b.writeUInt16LE(r.height ?? 0, 18);
  b.writeUInt32LE(Math.min(0xffffffff, r.rawCount ?? n), 20);
  b.writeUInt32LE(Math.min(0xffffffff, r.uniqueCount ?? n), 24);
  b.writeFloatLE(r.millis ?? 0, 28);
  kb.copy(b, REC_HEADER);
  let o = REC_HEADER + kb.length;
  for (let i = 0; i < n * 4; i++, o += 2) {
    const v = boxes[i];
    if (!Number.isInteger(v) || v < 0 || v > 0xffff) throw new Error(`proposal store: ${key}: box coordinate ${v} outside 0..65535`);
    b.writeUInt16LE(v, o);
  }
  rb.copy(b, o);
  b.writeUInt32LE(crcOf(b.subarray(0, len - 4)), len - 4);
  return b;
}

/** Decodes a full record buffer; null when it is torn or corrupt. */
function decodeRecord(b: Buffer): ProposalRecord | null {
  if (b.length < REC_HEADER + 4 || b.readUInt32LE(0) !== REC_MAGIC) return null;
  const len = b.readUInt32LE(4);
  if (len !== b.length || b.readUInt32LE(len - 4) !== crcOf(b.subarray(0, len - 4))) return null;
  const klen = b.readUInt16LE(8);
  const status = b.readUInt8(10) as RecordStatus;
  const n = b.readUInt32LE(12);
  const key = b.toString('utf8', REC_HEADER, REC_HEADER + klen);
  const boxes = new Int32Array(n * 4);
  let o = REC_HEADER + klen;
  for (let i = 0; i < n * 4; i++, o += 2) boxes[i] = b.readUInt16LE(o);
  const rec: ProposalRecord = {
    key, status, boxes,
    filterStage: b.readInt8(11), width: b.readUInt16LE(16), height: b.readUInt16LE(18),
    rawCount: b.readUInt32LE(20), uniqueCount: b.readUInt32LE(24), millis: b.readFloatLE(28),
  };
  if (status === RecordStatus.Failed) rec.reason = b.toString('utf8', o, len - 4);
  return rec;
}

function readExact(fd: number, pos: number, len: number): Buffer {
  const b = Buffer.alloc(len);
  let got = 0;
  while (got < len) {
    const n = fs.readSync(fd, b, got, len - got, pos + got);
    if (n === 0) break;
    got += n;
  }
  return got === len ? b : b.subarray(0, got);
}

function readLogHeader(fd: number, file: string): { meta: StoreMeta; dataStart: number } {
  const h = readExact(fd, 0, 12);
  if (h.length < 12 || h.toString('latin1', 0, 8) !== LOG_MAGIC) throw new Error(`${file}: not a soco-train proposal store (bad magic)`);
  const jlen = h.readUInt32LE(8);
  const j = readExact(fd, 12, jlen);
  if (j.length !== jlen) throw new Error(`${file}: truncated store header`);
  return { meta: JSON.parse(j.toString('utf8')) as StoreMeta, dataStart: 12 + jlen };
}

interface ScanEntry { offset: number; rec: ProposalRecord }

/** Sequential scan of valid records; stops at the first torn/corrupt one. Returns its offset. */
function* scanLog(fd: number, start: number, size: number, withBoxes = true): Generator<ScanEntry, number> {
  const CHUNK = 1 << 22;
  let buf = Buffer.alloc(0);
  let bufPos = start; // file offset of buf[0]
  let pos = start;
  let end = start;
  while (pos < size) {
    const rel = pos - bufPos;
    if (buf.length - rel < 8) {
      const more = readExact(fd, bufPos + buf.length, Math.min(CHUNK, size - (bufPos + buf.length)));
      if (more.length === 0) break;
      buf = Buffer.concat([buf.subarray(rel), more]);
      bufPos = pos;
      continue;
    }
    if (buf.readUInt32LE(rel) !== REC_MAGIC) break;
    const len = buf.readUInt32LE(rel + 4);
    if (len < REC_HEADER + 4 || pos + len > size) break;
    if (buf.length - rel < len) {
      const more = readExact(fd, bufPos + buf.length, Math.max(len - (buf.length - rel), Math.min(CHUNK, size - (bufPos + buf.length))));
      if (more.length === 0) break;
      buf = Buffer.concat([buf.subarray(rel), more]);
      bufPos = pos;
      continue;
    }
    const rec = decodeRecord(buf.subarray(rel, rel + len));
    if (!rec) break;
    if (!withBoxes) rec.boxes = new Int32Array(0);
    yield { offset: pos, rec };
    pos += len;
    end = pos;
  }
  return end;
}

/** Writes STORE.idx for the log's first `logSize` bytes (atomically: temp file + rename). */
function buildIndex(file: string, fd: number, dataStart: number, logSize: number): void {
  const offsets = new Map<string, number>();
  const it = scanLog(fd, dataStart, logSize, false);
  for (let r = it.next(); !r.done; r = it.next()) offsets.set(r.value.rec.key, r.value.offset);
  const count = offsets.size;
  let nslots = 16;
  while (nslots < count * 2) nslots *= 2;
  const table = Buffer.alloc(nslots * SLOT);
  for (const [key, off] of offsets) {
    const [h1, h2] = hashKey(Buffer.from(key, 'utf8'));
    let s = h1 & (nslots - 1);
    while (table.readUInt32LE(s * SLOT + 4) !== 0) s = (s + 1) & (nslots - 1);
    table.writeUInt32LE(h1, s * SLOT);
    table.writeUInt32LE(h2, s * SLOT + 4);
    table.writeDoubleLE(off, s * SLOT + 8);
  }
  const head = Buffer.alloc(IDX_HEADER);
  head.write(IDX_MAGIC, 0, 'latin1');
  head.writeDoubleLE(logSize, 8);
  head.writeUInt32LE(count, 16);
  head.writeUInt32LE(nslots, 20);
  head.writeUInt32LE(crcOf(table), 24);
  const tmp = `${file}.idx.tmp-${process.pid}`;
  const ifd = fs.openSync(tmp, 'w');
  try {
    fs.writeSync(ifd, head);
    for (let o = 0; o < table.length; o += 1 << 24) fs.writeSync(ifd, table.subarray(o, Math.min(table.length, o + (1 << 24))));
    fs.fsyncSync(ifd);
  } finally {
    fs.closeSync(ifd);
  }
  fs.renameSync(tmp, `${file}.idx`);
}

/** Read access: O(1) lookups by key (relative image path), sequential iteration. */
export class ProposalStore {
  readonly meta: StoreMeta;
  /** Distinct keys (images), failures included. */
  readonly size: number;
  private readonly fd: number;
  private readonly ifd: number;
  private readonly nslots: number;
  private readonly dataStart: number;
  private readonly logSize: number;
  private closed = false;

  private constructor(readonly file: string, fd: number, ifd: number, meta: StoreMeta, dataStart: number, logSize: number, size: number, nslots: number) {
    this.fd = fd; this.ifd = ifd; this.meta = meta; this.dataStart = dataStart; this.logSize = logSize;
    this.size = size; this.nslots = nslots;
  }

  /** Opens a store; rebuilds its index first if the index is missing or stale. */
  static open(file: string): ProposalStore {
    const fd = fs.openSync(file, 'r');
    try {
      const { meta, dataStart } = readLogHeader(fd, file);
      const logSize = fs.fstatSync(fd).size;
      let ifd = ProposalStore.openIndex(file, logSize);
      if (ifd === null) {
        buildIndex(file, fd, dataStart, logSize);
        ifd = ProposalStore.openIndex(file, logSize);
        if (ifd === null) throw new Error(`${file}.idx: could not build the index`);
      }
      const h = readExact(ifd, 0, IDX_HEADER);
      return new ProposalStore(file, fd, ifd, meta, dataStart, logSize, h.readUInt32LE(16), h.readUInt32LE(20));
    } catch (e) {
      fs.closeSync(fd);
      throw e;
    }
  }

  private static openIndex(file: string, logSize: number): number | null {
    let ifd: number;
    try { ifd = fs.openSync(`${file}.idx`, 'r'); } catch { return null; }
    const h = readExact(ifd, 0, IDX_HEADER);
    const ok = h.length === IDX_HEADER && h.toString('latin1', 0, 8) === IDX_MAGIC && h.readDoubleLE(8) === logSize &&
      fs.fstatSync(ifd).size === IDX_HEADER + h.readUInt32LE(20) * SLOT;
    if (!ok) { fs.closeSync(ifd); return null; }
    return ifd;
  }

  private offsetOf(key: string): number | undefined {
    const kb = Buffer.from(key, 'utf8');
    const [h1, h2] = hashKey(kb);
    const slot = Buffer.alloc(SLOT);
    for (let s = h1 & (this.nslots - 1), probes = 0; probes < this.nslots; s = (s + 1) & (this.nslots - 1), probes++) {
      fs.readSync(this.ifd, slot, 0, SLOT, IDX_HEADER + s * SLOT);
      const sh2 = slot.readUInt32LE(4);
      if (sh2 === 0) return undefined;
      if (sh2 !== h2 || slot.readUInt32LE(0) !== h1) continue;
      const off = slot.readDoubleLE(8);
      const head = readExact(this.fd, off, REC_HEADER + kb.length);
      if (head.length === REC_HEADER + kb.length && head.readUInt16LE(8) === kb.length && head.subarray(REC_HEADER).equals(kb)) return off;
    }
    return undefined;
  }

  private readAt(off: number): ProposalRecord {
    const len = readExact(this.fd, off + 4, 4).readUInt32LE(0);
    const rec = decodeRecord(readExact(this.fd, off, len));
    if (!rec) throw new Error(`${this.file}: corrupt record at offset ${off}`);
    return rec;
  }

  /** The record stored under exactly this key (lib/data/proposal_keys.ts finds an image's key:
   * its relative path, file name or stem). */
  get(key: string): ProposalRecord | undefined {
    this.check();
    const off = this.offsetOf(key);
    return off === undefined ? undefined : this.readAt(off);
  }

  has(key: string): boolean {
    this.check();
    return this.offsetOf(key) !== undefined;
  }

  /** Every current record in log order (superseded duplicates skipped). */
  *entries(opts: { boxes?: boolean } = {}): Generator<ProposalRecord> {
    this.check();
    const it = scanLog(this.fd, this.dataStart, this.logSize, opts.boxes ?? true);
    for (let r = it.next(); !r.done; r = it.next()) {
      if (this.offsetOf(r.value.rec.key) === r.value.offset) yield r.value.rec;
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    fs.closeSync(this.fd);
    fs.closeSync(this.ifd);
  }

  private check(): void {
    if (this.closed) throw new Error(`${this.file}: store is closed`);
  }
}

/** Append access. Opening an existing store resumes it: a torn tail is cut off, the keys already
 * present are reported by has(), and the index is rewritten on close(). */
export class ProposalStoreWriter {
  private fd: number;
  private pos: number;
  private readonly done = new Map<string, RecordStatus>();
  private sinceSync = 0;
  private closed = false;
  readonly meta: StoreMeta;
  /** Bytes dropped from a torn tail when the store was reopened. */
  readonly truncatedBytes: number;

  private constructor(readonly file: string, fd: number, pos: number, meta: StoreMeta, truncated: number) {
    this.fd = fd; this.pos = pos; this.meta = meta; this.truncatedBytes = truncated;
  }

  /** Creates a store, or reopens one for appending when it exists (meta then must match when
   * `meta` is given for the keys it names, unless `force`). */
  static open(file: string, meta: StoreMeta, opts: { force?: boolean } = {}): ProposalStoreWriter {
    if (fs.existsSync(file) && fs.statSync(file).size > 0) {
      const fd = fs.openSync(file, 'r+');
      try {
        const { meta: old, dataStart } = readLogHeader(fd, file);
        if (!opts.force) {
          for (const k of Object.keys(meta)) {
            if (JSON.stringify(old[k]) !== JSON.stringify(meta[k]))
              throw new Error(`${file}: was generated with ${k}=${JSON.stringify(old[k])}, not ${JSON.stringify(meta[k])}; use another --out or the same settings`);
          }
        }
        const size = fs.fstatSync(fd).size;
        const w = new ProposalStoreWriter(file, fd, 0, old, 0);
        const it = scanLog(fd, dataStart, size, false);
        let r = it.next();
        for (; !r.done; r = it.next()) w.done.set(r.value.rec.key, r.value.rec.status);
        const end = r.value as number;
        if (end < size) { fs.ftruncateSync(fd, end); fs.fsyncSync(fd); }
        w.pos = end;
        (w as { truncatedBytes: number }).truncatedBytes = size - end;
        return w;
      } catch (e) {
        fs.closeSync(fd);
        throw e;
      }
    }
    fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
    const j = Buffer.from(JSON.stringify(meta), 'utf8');
    const head = Buffer.alloc(12);
    head.write(LOG_MAGIC, 0, 'latin1');
    head.writeUInt32LE(j.length, 8);
    const fd = fs.openSync(file, 'w+');
    fs.writeSync(fd, Buffer.concat([head, j]), 0, 12 + j.length, 0);
    fs.fsyncSync(fd);
    return new ProposalStoreWriter(file, fd, 12 + j.length, meta, 0);
  }

  /** Keys already in the store (ok or failed). */
  has(key: string): boolean { return this.done.has(key); }
  status(key: string): RecordStatus | undefined { return this.done.get(key); }
  get count(): number { return this.done.size; }
  get failures(): number { let n = 0; for (const s of this.done.values()) if (s === RecordStatus.Failed) n++; return n; }

  append(key: string, r: NewRecord): void { this.write(key, encodeRecord(key, RecordStatus.Ok, r), RecordStatus.Ok); }

  appendFailure(key: string, reason: string, millis = 0): void {
    this.write(key, encodeRecord(key, RecordStatus.Failed, { millis }, reason), RecordStatus.Failed);
  }

  private write(key: string, b: Buffer, status: RecordStatus): void {
    if (this.closed) throw new Error(`${this.file}: writer is closed`);
    let o = 0;
    while (o < b.length) o += fs.writeSync(this.fd, b, o, b.length - o, this.pos + o);
    this.pos += b.length;
    this.done.set(key, status);
    // bound what an OS crash can lose; a process kill loses nothing already written
    if (++this.sinceSync >= 4096) { fs.fdatasyncSync(this.fd); this.sinceSync = 0; }
  }

  /** Flushes, closes and writes the index. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    fs.fsyncSync(this.fd);
    const { dataStart } = readLogHeader(this.fd, this.file);
    buildIndex(this.file, this.fd, dataStart, this.pos);
    fs.closeSync(this.fd);
  }
}

// ---------------------------------------------------------------- authors' JSON

/** Streams the authors' JSON ({key: [[x, y, w, h], ...], ...}) without holding it in memory. */
export async function* readAuthorsJson(file: string): AsyncGenerator<[string, number[][]]> {
  const stream = fs.createReadStream(file, { encoding: 'utf8', highWaterMark: 1 << 20 });
  let state: 'start' | 'key' | 'colon' | 'value' | 'comma' | 'end' = 'start';
  let key = '';
  let str: string | null = null; // inside a string token
  let esc = false;
  let depth = 0;
  let num = '';
  let rects: number[][] = [];
  let cur: number[] = [];
  const fail = (msg: string): never => { throw new Error(`${file}: not the authors' proposal JSON (${msg})`); };
  for await (const chunk of stream as AsyncIterable<string>) {
    const out: [string, number[][]][] = [];
    for (let i = 0; i < chunk.length; i++) {
      const ch = chunk[i];
      if (str !== null) {
        // raw text kept (escapes included) and decoded by JSON.parse at the closing quote
        if (esc) { str += ch; esc = false; }
        else if (ch === '\\') { str += ch; esc = true; }
        else if (ch === '"') { key = JSON.parse(`"${str}"`) as string; str = null; state = 'colon'; }
        else str += ch;
        continue;
      }
      if (ch === ' ' || ch === '\n' || ch === '\r' || ch === '\t') { if (num) { cur.push(Number(num)); num = ''; } continue; }
      switch (state) {
        case 'start': if (ch !== '{') fail('expected {'); state = 'key'; break;
        case 'key': if (ch === '}') { state = 'end'; break; } if (ch !== '"') fail(`expected a key, got ${ch}`); str = ''; break;
        case 'colon': if (ch !== ':') fail('expected :'); state = 'value'; depth = 0; rects = []; break;
        case 'value':
          if (ch === '[') { depth++; if (depth === 2) cur = []; else if (depth > 2) fail('nested too deep'); }
          else if (ch === ']') {
            if (num) { cur.push(Number(num)); num = ''; }
            depth--;
            if (depth === 1) rects.push(cur);
            else if (depth === 0) { out.push([key, rects]); state = 'comma'; }
          } else if (ch === ',') { if (num) { cur.push(Number(num)); num = ''; } }
          else if ((ch >= '0' && ch <= '9') || ch === '-' || ch === '.' || ch === 'e' || ch === 'E' || ch === '+') num += ch;
          else fail(`unexpected ${ch}`);
          break;
        case 'comma': if (ch === ',') state = 'key'; else if (ch === '}') state = 'end'; else fail('expected , or }'); break;
        case 'end': fail('trailing data');
      }
    }
    for (const e of out) yield e;
  }
  if (state !== 'end') fail('unexpected end of file');
}

/** Writes the authors' JSON format; returns the number of images written. */
export async function writeAuthorsJson(store: ProposalStore, file: string, opts: { basename?: boolean; includeFailed?: boolean } = {}): Promise<number> {
  const tmp = `${file}.tmp-${process.pid}`;
  const out = fs.createWriteStream(tmp, { encoding: 'utf8' });
  let failed: Error | undefined;
  out.on('error', (e) => { failed = e; });
  const write = async (s: string): Promise<void> => {
    if (failed) throw failed;
    if (!out.write(s)) await new Promise<void>((resolve) => out.once('drain', resolve));
  };
  let n = 0;
  await write('{');
  for (const rec of store.entries()) {
    if (rec.status !== RecordStatus.Ok && !opts.includeFailed) continue;
    const key = opts.basename ? rec.key.slice(rec.key.lastIndexOf('/') + 1) : rec.key;
    const b = rec.boxes;
    const parts: string[] = [];
    for (let i = 0; i < b.length; i += 4) parts.push(`[${b[i]}, ${b[i + 1]}, ${b[i + 2] - b[i] - 1}, ${b[i + 3] - b[i + 1] - 1}]`);
    await write(`${n ? ', ' : ''}${JSON.stringify(key)}: [${parts.join(', ')}]`);
    n++;
  }
  await write('}');
  await new Promise<void>((resolve, reject) => out.end((err?: Error | null) => (err ? reject(err) : resolve())));
  fs.renameSync(tmp, file);
  return n;
}
