// Proposal store: an append-only record log plus an on-disk hash index (docs/proposal-store.md).
// Every record checks itself (length, CRC): a scan steps over a damaged record to the next valid
// one and reports it, so damage costs only the records it touches; an unfinished append at the
// end is cut off on reopen. The index is rebuilt from the log whenever it does not describe the
// log as it is. Opening reads only headers; a lookup is one or two small preads, whatever the size.
import * as fs from 'fs';
import * as path from 'path';
import * as zlib from 'zlib';
import { syncDir, tempPathFor } from '../io/temp_files';
import { imageOrderKey } from './image_files';

const LOG_MAGIC = 'SOCOPRP1';
const IDX_MAGIC = 'SOCOIDX1';
const REC_MAGIC = 0x63655250; // 'PRec'
const REC_HEADER = 32;
const IDX_HEADER = 32;
const SLOT = 16;
const MAGIC_BYTES = Buffer.from([0x50, 0x52, 0x65, 0x63]);
const SCAN_CHUNK = 1 << 22;

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

/** Decodes the record at b[o, o + len), whose length and CRC were checked (probe). */
function decodeRecord(b: Buffer, o: number, len: number, withBoxes: boolean): ProposalRecord {
  const klen = b.readUInt16LE(o + 8);
  const status = b[o + 10] as RecordStatus;
  const n = b.readUInt32LE(o + 12);
  const key = b.toString('utf8', o + REC_HEADER, o + REC_HEADER + klen);
  const boxes = new Int32Array(withBoxes ? n * 4 : 0);
  let p = o + REC_HEADER + klen;
  for (let i = 0; i < boxes.length; i++, p += 2) boxes[i] = b.readUInt16LE(p);
  const rec: ProposalRecord = {
    key, status, boxes,
    filterStage: b.readInt8(o + 11), width: b.readUInt16LE(o + 16), height: b.readUInt16LE(o + 18),
    rawCount: b.readUInt32LE(o + 20), uniqueCount: b.readUInt32LE(o + 24), millis: b.readFloatLE(o + 28),
  };
  if (status === RecordStatus.Failed) rec.reason = b.toString('utf8', o + REC_HEADER + klen + n * 8, o + len - 4);
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
  try {
    return { meta: JSON.parse(j.toString('utf8')) as StoreMeta, dataStart: 12 + jlen };
  } catch (e) {
    throw new Error(`${file}: the store's header (its settings) is damaged: ${(e as Error).message}`);
  }
}

/** The log's bytes through one buffer: reads of at least `chunk` bytes (a sliding window for scans, a record for lookups). */
class LogView {
  buf: Buffer = Buffer.alloc(0);
  /** Log offset of buf[0]. */
  at = 0;
  constructor(private readonly fd: number, readonly size: number, private readonly chunk: number) {}

  /** Makes the bytes [pos, pos + len) readable at buf[pos - at]; returns how many there are (fewer at the end). */
  load(pos: number, len: number): number {
    const end = Math.min(this.size, pos + len);
    if (pos < this.at || end > this.at + this.buf.length) {
      this.buf = readExact(this.fd, pos, Math.min(this.size - pos, Math.max(end - pos, this.chunk)));
      this.at = pos;
    }
    return end - pos;
  }

  /** Those bytes as a buffer, valid until the next load. */
  slice(pos: number, len: number): Buffer {
    const n = this.load(pos, len);
    return this.buf.subarray(pos - this.at, pos - this.at + n);
  }
}

const WHY = ['', 'no record header', 'impossible record length', 'checksum mismatch', 'fields longer than the record'];

/** The length of the valid record at pos (> 0), or -k when there is none: WHY[k] says why. */
function probe(v: LogView, pos: number): number {
  if (v.load(pos, 8) < 8 || v.buf.readUInt32LE(pos - v.at) !== REC_MAGIC) return -1;
  const len = v.buf.readUInt32LE(pos - v.at + 4);
  if (len < REC_HEADER + 4 || pos + len > v.size) return -2;
  v.load(pos, len);
  const b = v.buf, o = pos - v.at;
  if (b.readUInt32LE(o + len - 4) !== crcOf(b.subarray(o, o + len - 4))) return -3;
  const boxBytes = b[o + 10] === RecordStatus.Ok ? b.readUInt32LE(o + 12) * 8 : 0;
  if (REC_HEADER + b.readUInt16LE(o + 8) + boxBytes + 4 > len) return -4;
  return len;
}

/** Offset of the first valid record starting in [from, limit), or -1. */
function findNext(v: LogView, from: number, limit: number): number {
  for (let p = from; p < limit;) {
    const chunk = v.slice(p, SCAN_CHUNK);
    if (chunk.length < 4) return -1;
    const i = chunk.indexOf(MAGIC_BYTES);
    if (i < 0) { p += chunk.length - 3; continue; }  // a magic may straddle the chunk's end
    const c = p + i;
    if (c >= limit) return -1;
    if (probe(v, c) > 0) return c;
    p = c + 1;
  }
  return -1;
}

/** The key a damaged record names, if its header and key bytes still read as one. */
function keyAsRead(v: LogView, pos: number, end: number): string | null {
  const h = v.slice(pos, REC_HEADER);
  if (h.length < REC_HEADER || h.readUInt32LE(0) !== REC_MAGIC) return null;
  const klen = h.readUInt16LE(8);
  if (klen === 0 || pos + REC_HEADER + klen > end) return null;
  try {
    const key = new TextDecoder('utf-8', { fatal: true }).decode(v.slice(pos + REC_HEADER, klen));
    return /[\u0000-\u001f\u007f]/.test(key) ? null : key;
  } catch {
    return null;
  }
}

/**
 * Where the damage that starts at pos ends: at the record's own end when its header is sane (unless
 * a valid record starts inside it), else at the next valid record, else at the end of the log.
 */
function damageEnd(v: LogView, pos: number): number {
  const h = v.slice(pos, 8);
  const len = h.length === 8 && h.readUInt32LE(0) === REC_MAGIC ? h.readUInt32LE(4) : 0;
  if (len >= REC_HEADER + 4 && pos + len <= v.size) {
    const inside = findNext(v, pos + 1, pos + len);
    return inside >= 0 ? inside : pos + len;
  }
  const next = findNext(v, pos + 1, v.size);
  return next >= 0 ? next : v.size;
}

/** An interrupted append: the start of a record, cut before the length its header gives. */
function isTorn(v: LogView, pos: number): boolean {
  const rest = v.size - pos;
  const h = v.slice(pos, 8);
  if (rest < 4) return h.equals(MAGIC_BYTES.subarray(0, rest));
  return h.readUInt32LE(0) === REC_MAGIC && (rest < 8 || h.readUInt32LE(4) > rest);
}

/** A stretch of the log that holds no valid record: one or more damaged records. */
export interface DamagedRecord {
  /** Byte offset in the store and the offset of what follows (the next good record or the end). */
  offset: number;
  end: number;
  /** The image its header names (it may be damaged too); null when unreadable. */
  key: string | null;
  why: string;
}

/** A good record: its bytes are buf[o, o + len), valid until the scan's next step. */
interface GoodRecord { offset: number; len: number; buf: Buffer; o: number; damage?: undefined }
type ScanItem = GoodRecord | { damage: DamagedRecord };
interface ScanEnd {
  /** End of the last good record. */
  goodEnd: number;
  /** Bytes of an interrupted append at the end (not damage: that record was never complete). */
  tornBytes: number;
}

const keyOf = (r: GoodRecord): string => r.buf.toString('utf8', r.o + REC_HEADER, r.o + REC_HEADER + r.buf.readUInt16LE(r.o + 8));

/**
 * Every good record of the log in order, and every damaged stretch between them: a record that
 * fails its checks is skipped up to the next valid record (or to its own end, when its header is
 * sane and the next record starts there), so damage in the middle costs only the damaged records.
 */
function* scanLog(fd: number, start: number, size: number): Generator<ScanItem, ScanEnd> {
  const v = new LogView(fd, size, SCAN_CHUNK);
  let pos = start, goodEnd = start;
  let pending: DamagedRecord | null = null;
  while (pos < size) {
    const len = probe(v, pos);
    if (len > 0) {
      if (pending) { yield { damage: pending }; pending = null; }
      yield { offset: pos, len, buf: v.buf, o: pos - v.at };
      pos += len;
      goodEnd = pos;
      continue;
    }
    const end = damageEnd(v, pos);
    if (end === size && isTorn(v, pos)) {
      if (pending) yield { damage: pending };
      return { goodEnd, tornBytes: size - pos };
    }
    // headerless bytes right after a damaged record are part of it
    if (pending && !v.slice(pos, 4).equals(MAGIC_BYTES)) pending.end = end;
    else {
      if (pending) yield { damage: pending };
      pending = { offset: pos, end, key: keyAsRead(v, pos, end), why: WHY[-len] };
    }
    pos = end;
  }
  if (pending) yield { damage: pending };
  return { goodEnd, tornBytes: 0 };
}

export function describeDamage(d: DamagedRecord): string {
  return `offset ${d.offset} (${d.end - d.offset} bytes), ${d.key === null ? 'image unknown (its header is damaged)' : `image ${d.key}`}: ${d.why}`;
}

/** The command that repairs a damaged store: generate with its settings, or import again. */
export function repairCommand(file: string, meta: StoreMeta): string {
  if (typeof meta.importedFrom === 'string') return `import it again: \`soco-train proposals import --json ${meta.importedFrom} --out NEW_STORE\``;
  const flags = [`--scale ${meta.scale}`, `--sigma ${meta.sigma}`, `--min-size ${meta.minSize}`];
  if (meta.filter === 'none') flags.push('--no-filter');
  if (typeof meta.maxSide === 'number' && meta.maxSide > 0) flags.push(`--max-side ${meta.maxSide}`);
  return `\`soco-train proposals generate --images IMAGE_DIR --out ${file} ${flags.join(' ')}\` (keeps every good record and redoes the damaged ones)`;
}

/** A record failed its checks; the message names it and the remedies. */
export class DamagedStoreError extends Error {
  override name = 'DamagedStoreError';
  constructor(file: string, meta: StoreMeta, readonly damaged: DamagedRecord[], skipFlag?: string) {
    const n = damaged.length;
    const list = damaged.slice(0, 10).map((d) => `  ${describeDamage(d)}`).join('\n') + (n > 10 ? `\n  ... and ${n - 10} more` : '');
    super(`${file}: ${n} damaged record${n === 1 ? '' : 's'}:\n${list}\nRepair: ${repairCommand(file, meta)}` +
      (skipFlag ? `; or pass ${skipFlag} to go on without them` : `; \`soco-train proposals verify ${file}\` lists every damaged record`));
  }
}

// ---------------------------------------------------------------- index

/** The index is current when it describes the log's length and last 4 bytes (a rewritten log of the same length is not). */
function logFingerprint(fd: number, logSize: number): number {
  return readExact(fd, logSize - 4, 4).readUInt32LE(0);
}

/** Writes STORE.idx for the log's first `logSize` bytes (atomically: temp file + rename). */
function buildIndex(file: string, fd: number, dataStart: number, logSize: number): void {
  const offsets = new Map<string, number>();
  const it = scanLog(fd, dataStart, logSize);
  for (let r = it.next(); !r.done; r = it.next()) if (!r.value.damage) offsets.set(keyOf(r.value), r.value.offset);
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
  head.writeUInt32LE(logFingerprint(fd, logSize), 28);
  const tmp = tempPathFor(`${file}.idx`);
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

// ---------------------------------------------------------------- reading

/** What verify() found. */
export interface StoreCheck {
  /** Good records (a re-run image's older records included). */
  records: number;
  damaged: DamagedRecord[];
  /** Bytes of an interrupted append at the end (a generate that was killed or is still running). */
  tornBytes: number;
  /** 'rebuilt': the index failed its checksum and was rebuilt from the records. */
  index: 'ok' | 'rebuilt';
}

/** Read access: O(1) lookups by key (relative image path), sequential iteration. */
export class ProposalStore {
  readonly meta: StoreMeta;
  /** Leave damaged records out (as if absent) instead of throwing DamagedStoreError. */
  skipDamaged = false;
  private readonly fd: number;
  private ifd: number;
  private count: number;
  private nslots: number;
  private readonly dataStart: number;
  private readonly logSize: number;
  private closed = false;

  private constructor(readonly file: string, fd: number, ifd: number, meta: StoreMeta, dataStart: number, logSize: number, size: number, nslots: number) {
    this.fd = fd; this.ifd = ifd; this.meta = meta; this.dataStart = dataStart; this.logSize = logSize;
    this.count = size; this.nslots = nslots;
  }

  /** Distinct keys (images), failures included. */
  get size(): number { return this.count; }

  /** Opens a store; rebuilds its index first if the index is missing or stale. */
  static open(file: string): ProposalStore {
    const fd = fs.openSync(file, 'r');
    try {
      const { meta, dataStart } = readLogHeader(fd, file);
      const logSize = fs.fstatSync(fd).size;
      let ifd = ProposalStore.openIndex(file, fd, logSize);
      if (ifd === null) {
        buildIndex(file, fd, dataStart, logSize);
        ifd = ProposalStore.openIndex(file, fd, logSize);
        if (ifd === null) throw new Error(`${file}.idx: could not build the index`);
      }
      const h = readExact(ifd, 0, IDX_HEADER);
      return new ProposalStore(file, fd, ifd, meta, dataStart, logSize, h.readUInt32LE(16), h.readUInt32LE(20));
    } catch (e) {
      fs.closeSync(fd);
      throw e;
    }
  }

  private static openIndex(file: string, fd: number, logSize: number): number | null {
    let ifd: number;
    try { ifd = fs.openSync(`${file}.idx`, 'r'); } catch { return null; }
    const h = readExact(ifd, 0, IDX_HEADER);
    const ok = h.length === IDX_HEADER && h.toString('latin1', 0, 8) === IDX_MAGIC && h.readDoubleLE(8) === logSize &&
      h.readUInt32LE(28) === logFingerprint(fd, logSize) && fs.fstatSync(ifd).size === IDX_HEADER + h.readUInt32LE(20) * SLOT;
    if (!ok) { fs.closeSync(ifd); return null; }
    return ifd;
  }

  /**
   * Checks every record (length, CRC, fields) and the index's checksum, in one sequential read of
   * both files. A damaged index is rebuilt (it is derived data); damaged records are returned, and
   * afterwards get() and entries() treat them per `skipDamaged`.
   */
  verify(): StoreCheck {
    this.check();
    const damaged: DamagedRecord[] = [];
    let records = 0;
    const it = scanLog(this.fd, this.dataStart, this.logSize);
    let r = it.next();
    for (; !r.done; r = it.next()) {
      if (r.value.damage) damaged.push(r.value.damage);
      else records++;
    }
    const head = readExact(this.ifd, 0, IDX_HEADER);
    let crc = 0;
    for (let o = 0; o < this.nslots * SLOT; o += SCAN_CHUNK) {
      crc = zlib.crc32(readExact(this.ifd, IDX_HEADER + o, Math.min(SCAN_CHUNK, this.nslots * SLOT - o)), crc);
    }
    let index: StoreCheck['index'] = 'ok';
    if ((crc >>> 0) !== head.readUInt32LE(24)) {
      buildIndex(this.file, this.fd, this.dataStart, this.logSize);
      const ifd = ProposalStore.openIndex(this.file, this.fd, this.logSize);
      if (ifd === null) throw new Error(`${this.file}.idx: could not rebuild the index`);
      fs.closeSync(this.ifd);
      this.ifd = ifd;
      const h = readExact(ifd, 0, IDX_HEADER);
      this.count = h.readUInt32LE(16);
      this.nslots = h.readUInt32LE(20);
      index = 'rebuilt';
    }
    return { records, damaged, tornBytes: (r.value as ScanEnd).tornBytes, index };
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

  /** The record at `off`; undefined when it is damaged and skipDamaged is set. */
  private readAt(off: number): ProposalRecord | undefined {
    const v = new LogView(this.fd, this.logSize, 512);  // most records whole in one read
    const len = probe(v, off);
    if (len > 0) return decodeRecord(v.buf, off - v.at, len, true);
    if (this.skipDamaged) return undefined;
    const end = damageEnd(v, off);
    throw new DamagedStoreError(this.file, this.meta, [{ offset: off, end, key: keyAsRead(v, off, end), why: WHY[-len] }]);
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

  /**
   * Every current record (superseded duplicates skipped), in log order or, with order 'image', in
   * the order of the image list (lib/data/image_files: the tree walked with sorted names). A damaged
   * record throws DamagedStoreError, or is left out when skipDamaged is set.
   */
  *entries(opts: { boxes?: boolean; order?: 'log' | 'image' } = {}): Generator<ProposalRecord> {
    this.check();
    const it = scanLog(this.fd, this.dataStart, this.logSize);
    const sorted: { key: string; offset: number }[] = [];
    for (let r = it.next(); !r.done; r = it.next()) {
      const v = r.value;
      if (v.damage) {
        if (this.skipDamaged) continue;
        throw new DamagedStoreError(this.file, this.meta, [v.damage]);
      }
      const key = keyOf(v);
      if (this.offsetOf(key) !== v.offset) continue;
      if (opts.order === 'image') sorted.push({ key: imageOrderKey(key), offset: v.offset });
      else yield decodeRecord(v.buf, v.o, v.len, opts.boxes ?? true);
    }
    if (opts.order !== 'image') return;
    sorted.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    for (const s of sorted) {
      const rec = this.readAt(s.offset);
      if (rec) yield rec;
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

/**
 * Opens a store for reading after verify(): a damaged one is refused with the list of damaged
 * records, unless `skipDamaged` (then they count as absent and `log` gets how many were skipped).
 * `skipFlag` names the caller's flag in messages.
 */
export function openVerified(file: string, o: { skipDamaged: boolean; skipFlag?: string; log: (m: string) => void }): ProposalStore {
  const store = ProposalStore.open(file);
  try {
    const c = store.verify();
    if (c.index === 'rebuilt') o.log(`${file}: its index failed its checksum; rebuilt it from the records`);
    if (c.damaged.length) {
      if (!o.skipDamaged) throw new DamagedStoreError(file, store.meta, c.damaged, o.skipFlag);
      store.skipDamaged = true;
      const n = c.damaged.length;
      o.log(`${file}: skipped ${n} damaged record${n === 1 ? '' : 's'}${o.skipFlag ? ` (${o.skipFlag})` : ''}; their images count as having no proposals:\n` +
        c.damaged.slice(0, 10).map((d) => `  ${describeDamage(d)}`).join('\n') + (n > 10 ? `\n  ... and ${n - 10} more` : ''));
    }
    return store;
  } catch (e) {
    store.close();
    throw e;
  }
}

// ---------------------------------------------------------------- writing

/** Append access. Opening an existing store resumes it: an interrupted append at the end is cut
 * off, damaged records are dropped (the store is rewritten without them), the keys of the good
 * records are reported by has(), and the index is rewritten on close(). One writer at a time: the
 * commands hold STORE.lock (lib/io/lock.ts) around it. */
export class ProposalStoreWriter {
  private fd: number;
  private pos: number;
  private readonly done = new Map<string, RecordStatus>();
  private sinceSync = 0;
  private closed = false;
  readonly meta: StoreMeta;
  /** Bytes of an interrupted append cut off the end when the store was reopened. */
  tornBytes = 0;
  /** Damaged records dropped when the store was reopened (their images are no longer in it). */
  dropped: DamagedRecord[] = [];

  private constructor(readonly file: string, fd: number, pos: number, meta: StoreMeta) {
    this.fd = fd; this.pos = pos; this.meta = meta;
  }

  /** Creates a store, or reopens one for appending when it exists (meta then must match when
   * `meta` is given for the keys it names, unless `force`). */
  static open(file: string, meta: StoreMeta, opts: { force?: boolean } = {}): ProposalStoreWriter {
    return fs.existsSync(file) && fs.statSync(file).size > 0 ? ProposalStoreWriter.resume(file, meta, opts) : ProposalStoreWriter.create(file, meta);
  }

  /** A new store: the header is written to a temp file and renamed, so a store is never half a header. */
  private static create(file: string, meta: StoreMeta): ProposalStoreWriter {
    fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
    const j = Buffer.from(JSON.stringify(meta), 'utf8');
    const head = Buffer.alloc(12);
    head.write(LOG_MAGIC, 0, 'latin1');
    head.writeUInt32LE(j.length, 8);
    const tmp = tempPathFor(file);
    const fd = fs.openSync(tmp, 'w+');
    try {
      fs.writeSync(fd, Buffer.concat([head, j]), 0, 12 + j.length, 0);
      fs.fsyncSync(fd);
      fs.renameSync(tmp, file);
    } catch (e) {
      fs.closeSync(fd);
      fs.rmSync(tmp, { force: true });
      throw e;
    }
    return new ProposalStoreWriter(file, fd, 12 + j.length, meta);
  }

  private static resume(file: string, meta: StoreMeta, opts: { force?: boolean }): ProposalStoreWriter {
    let fd = fs.openSync(file, 'r+');
    try {
      const { meta: old, dataStart } = readLogHeader(fd, file);
      if (!opts.force) {
        for (const k of Object.keys(meta)) {
          if (JSON.stringify(old[k]) !== JSON.stringify(meta[k]))
            throw new Error(`${file}: was generated with ${k}=${JSON.stringify(old[k])}, not ${JSON.stringify(meta[k])}; use another --out or the same settings`);
        }
      }
      const size = fs.fstatSync(fd).size;
      const w = new ProposalStoreWriter(file, fd, 0, old);
      const it = scanLog(fd, dataStart, size);
      let r = it.next();
      for (; !r.done; r = it.next()) {
        if (r.value.damage) w.dropped.push(r.value.damage);
        else w.done.set(keyOf(r.value), r.value.buf[r.value.o + 10] as RecordStatus);
      }
      const { goodEnd, tornBytes } = r.value;
      w.tornBytes = tornBytes;
      if (w.dropped.some((d) => d.offset < goodEnd)) {
        // damage before good records: rewrite the log with the good records only
        fs.closeSync(fd);
        fd = -1;
        w.fd = fd = compact(file, dataStart);
        w.pos = fs.fstatSync(fd).size;
      } else {
        if (goodEnd < size) { fs.ftruncateSync(fd, goodEnd); fs.fsyncSync(fd); }
        w.pos = goodEnd;
      }
      return w;
    } catch (e) {
      if (fd >= 0) fs.closeSync(fd);
      throw e;
    }
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

  /** Flushes, closes and writes the index (`index: false`: leaves it to the next reader). */
  close(o: { index?: boolean } = {}): void {
    if (this.closed) return;
    this.closed = true;
    try {
      fs.fsyncSync(this.fd);
      if (o.index !== false) buildIndex(this.file, this.fd, readLogHeader(this.fd, this.file).dataStart, this.pos);
    } finally {
      fs.closeSync(this.fd);
    }
  }
}

/** Rewrites `file` with its header and good records only (temp file + rename); returns it open for appending. */
function compact(file: string, dataStart: number): number {
  const src = fs.openSync(file, 'r');
  const tmp = tempPathFor(file);
  const out = fs.openSync(tmp, 'w+');
  try {
    let pos = 0;
    const chunks: Buffer[] = [readExact(src, 0, dataStart)];
    let pending = dataStart;
    const flush = (): void => {
      const b = Buffer.concat(chunks);
      for (let o = 0; o < b.length;) o += fs.writeSync(out, b, o, b.length - o, pos + o);
      pos += b.length;
      chunks.length = 0;
      pending = 0;
    };
    const it = scanLog(src, dataStart, fs.fstatSync(src).size);
    for (let r = it.next(); !r.done; r = it.next()) {
      const v = r.value;
      if (v.damage) continue;
      chunks.push(Buffer.from(v.buf.subarray(v.o, v.o + v.len)));
      if ((pending += v.len) >= SCAN_CHUNK) flush();
    }
    flush();
    fs.fsyncSync(out);
    fs.renameSync(tmp, file);
    syncDir(path.dirname(path.resolve(file)));
    return out;
  } catch (e) {
    fs.closeSync(out);
    fs.rmSync(tmp, { force: true });
    throw e;
  } finally {
    fs.closeSync(src);
  }
}

// ---------------------------------------------------------------- authors' JSON

/** The store holds 16-bit pixel coordinates: box ends x + w + 1 and y + h + 1 included. */
const MAX_COORD = 0xffff;
const JSON_NUMBER = /^-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?$/;
const RECT_FIELDS = ['x', 'y', 'w', 'h'];

/**
 * Streams the authors' JSON ({key: [[x, y, w, h], ...], ...}) without holding it in memory. Every
 * number is checked on its text before any conversion (a JSON number, finite, a whole pixel, not
 * negative, box ends within the store's 16-bit range), and errors quote that text with its JSON
 * path: image key, box index, field.
 */
export async function* readAuthorsJson(file: string): AsyncGenerator<[string, number[][]]> {
  const stream = fs.createReadStream(file, { encoding: 'utf8', highWaterMark: 1 << 20 });
  type State = 'start' | 'firstKey' | 'key' | 'colon' | 'list' | 'firstBox' | 'box' | 'firstNum' | 'num' | 'inNum' | 'afterNum' | 'afterBox' | 'comma' | 'end';
  let state: State = 'start';
  let key = '';
  let str: string | null = null; // inside a string token: its raw text, escapes included
  let esc = false;
  let num = '';
  let texts: string[] = [];
  let rects: number[][] = [];
  let at = 0; // characters before the current chunk
  let i = 0;
  const where = (f?: number): string => {
    const b = rects.length;
    return `image ${JSON.stringify(key)} box ${b}${f === undefined ? '' : ` ${RECT_FIELDS[f] ?? `number ${f}`}`} ` +
      `(JSON path $[${JSON.stringify(key)}][${b}]${f === undefined ? '' : `[${f}]`})`;
  };
  const fail = (msg: string): never => { throw new Error(`${file}: not the authors' proposal JSON: ${msg} at character ${at + i}`); };
  const bad = (msg: string): never => { throw new Error(`${file}: ${msg}`); };
  const endBox = (): void => {
    if (texts.length !== 4) bad(`${where()}: [${texts.join(', ')}] has ${texts.length} numbers; a box is [x, y, w, h]`);
    const v = texts.map((t, f) => {
      if (!JSON_NUMBER.test(t)) bad(`${where(f)}: ${t} is not a number`);
      const x = Number(t);
      if (!Number.isFinite(x)) bad(`${where(f)}: ${t} is not a finite number`);
      if (!Number.isInteger(x)) bad(`${where(f)}: ${t} is not a whole pixel`);
      if (x < 0) bad(`${where(f)}: ${t} is negative`);
      if (x >= MAX_COORD) bad(`${where(f)}: ${t} is beyond the store's range (coordinates up to ${MAX_COORD})`);
      return x;
    });
    for (const [o, s] of [[0, 2], [1, 3]]) {
      if (v[o] + v[s] + 1 > MAX_COORD)
        bad(`${where()}: ${RECT_FIELDS[o]} ${texts[o]} + ${RECT_FIELDS[s]} ${texts[s]} + 1 is beyond the store's range (coordinates up to ${MAX_COORD})`);
    }
    rects.push(v);
    texts = [];
  };
  for await (const chunk of stream as AsyncIterable<string>) {
    const out: [string, number[][]][] = [];
    for (i = 0; i < chunk.length; i++) {
      const ch = chunk[i];
      if (str !== null) {
        if (esc) { str += ch; esc = false; }
        else if (ch === '\\') { str += ch; esc = true; }
        else if (ch === '"') {
          try { key = JSON.parse(`"${str}"`) as string; } catch { fail(`malformed key "${str.slice(0, 80)}"`); }
          str = null;
          state = 'colon';
        } else str += ch;
        continue;
      }
      if (state === 'inNum') {
        if ((ch >= '0' && ch <= '9') || ch === '-' || ch === '+' || ch === '.' || ch === 'e' || ch === 'E') { num += ch; continue; }
        texts.push(num);
        num = '';
        state = 'afterNum';
      }
      if (ch === ' ' || ch === '\n' || ch === '\r' || ch === '\t') continue;
      // the first key, box or number may instead close its (empty) container
      if (state === 'firstKey') { if (ch === '}') { state = 'end'; continue; } state = 'key'; }
      if (state === 'firstBox') { if (ch === ']') { out.push([key, rects]); state = 'comma'; continue; } state = 'box'; }
      if (state === 'firstNum') { if (ch === ']') { endBox(); state = 'afterBox'; continue; } state = 'num'; }
      switch (state) {
        case 'start': if (ch !== '{') fail(`expected { , got ${ch}`); state = 'firstKey'; break;
        case 'key': if (ch !== '"') fail(`expected a key, got ${ch}`); str = ''; break;
        case 'colon': if (ch !== ':') fail(`expected : after the key ${JSON.stringify(key)}, got ${ch}`); state = 'list'; break;
        case 'list': if (ch !== '[') fail(`expected the list of boxes of ${JSON.stringify(key)}, got ${ch}`); rects = []; state = 'firstBox'; break;
        case 'box': if (ch !== '[') fail(`${where()}: expected a box [x, y, w, h], got ${ch}`); texts = []; state = 'firstNum'; break;
        case 'num':
          if (!((ch >= '0' && ch <= '9') || ch === '-')) fail(`${where(texts.length)}: expected a number, got ${ch}`);
          num = ch;
          state = 'inNum';
          break;
        case 'afterNum':
          if (ch === ',') state = 'num';
          else if (ch === ']') { endBox(); state = 'afterBox'; }
          else fail(`${where(texts.length - 1)}: expected , or ] after ${texts[texts.length - 1]}, got ${ch}`);
          break;
        case 'afterBox':
          if (ch === ',') state = 'box';
          else if (ch === ']') { out.push([key, rects]); state = 'comma'; }
          else fail(`${where()}: expected , or ] after a box, got ${ch}`);
          break;
        case 'comma': if (ch === ',') state = 'key'; else if (ch === '}') state = 'end'; else fail(`expected , or } after the boxes of ${JSON.stringify(key)}, got ${ch}`); break;
        case 'end': fail('trailing data after the closing }');
      }
    }
    at += chunk.length;
    for (const e of out) yield e;
  }
  i = 0;
  if (state !== 'end') fail('unexpected end of file');
}

/**
 * Writes the authors' JSON format, keys in image order (lib/data/image_files), atomically (temp
 * file + rename); returns the number of images written.
 */
export async function writeAuthorsJson(store: ProposalStore, file: string, opts: { basename?: boolean; includeFailed?: boolean } = {}): Promise<number> {
  const tmp = tempPathFor(file);
  const out = fs.createWriteStream(tmp, { encoding: 'utf8' });
  let failed: Error | undefined;
  out.on('error', (e) => { failed = e; });
  const write = async (s: string): Promise<void> => {
    if (failed) throw failed;
    if (!out.write(s)) await new Promise<void>((resolve) => out.once('drain', resolve));
  };
  let n = 0;
  try {
    await write('{');
    for (const rec of store.entries({ order: 'image' })) {
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
  } catch (e) {
    out.destroy();
    fs.rmSync(tmp, { force: true });
    throw e;
  }
  return n;
}
