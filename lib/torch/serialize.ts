// PyTorch checkpoint files in TypeScript: save() writes what Python's torch.save writes (zip archive,
// pickle protocol 2, one raw little-endian record per storage, 64-byte aligned records, zip64
// records), load() reads those and Python's own torch.save files through a small pickle VM that
// only knows PyTorch's tensor/storage/container globals and never executes anything.
//
// Layout written, byte for byte what torch.save(obj, io.BytesIO()) writes (checked against 1.13
// plus the byteorder record 2.x adds; 2.1+ also appends .data/serialization_id, which no reader needs;
// torch.save to a path names the folder after the file instead of "archive", which readers ignore):
//   archive/data.pkl, archive/byteorder, archive/data/<key> (keys in sorted string order),
//   archive/version, central directory, zip64 end record + locator, end record.
import * as fs from 'fs';
import * as path from 'path';
import * as zlib from 'zlib';
import { native } from './native';
import { syncDir, tempPathFor } from '../io/temp_files';
import { DType, TypedArray, checkDevice, isFloating } from './dtype';
import { Tensor, op, w } from './tensor';
import { empty, tensor } from './functional';

/** Values save() accepts. Numbers that are integers become Python ints, others floats. */
export type Saveable =
  | Tensor | number | bigint | boolean | string | null
  | Saveable[] | { [key: string]: Saveable } | Map<string | number, Saveable>;

/**
 * Values load() returns. Python dicts with only str keys (dict, OrderedDict) become plain objects
 * in key order, other dicts a Map; lists, tuples and torch.Size become arrays; ints beyond 2^53
 * become bigint; bytes become Uint8Array; a torch dtype object becomes its name.
 */
export type Loaded =
  | Tensor | number | bigint | boolean | string | null | Uint8Array
  | Loaded[] | { [key: string]: Loaded } | Map<Loaded, Loaded>;

/**
 * Python attributes set by pickle's BUILD on a loaded dict (a state_dict's `_metadata`), kept off
 * the enumerable keys so that Object.keys() of a state dict lists exactly its tensors.
 */
export const pythonAttributes: unique symbol = Symbol('pythonAttributes');

/** A file that cannot be read as a PyTorch checkpoint, or a value that cannot be saved. */
export class SerializationError extends Error {
  override name = 'SerializationError';
}

export interface LoadOptions {
  /** Where the tensors go (default 'cpu', whatever device they were saved from). */
  device?: string;
}

export interface SaveOptions {
  /** 'always' writes zip64 records for every entry (readers must cope); default only when needed. */
  zip64?: 'auto' | 'always';
}

const STORAGE_CLASS: Record<DType, string> = {
  float32: 'FloatStorage', float64: 'DoubleStorage', float16: 'HalfStorage', bfloat16: 'BFloat16Storage',
  int64: 'LongStorage', int32: 'IntStorage', uint8: 'ByteStorage', bool: 'BoolStorage',
};
const DTYPE_OF_STORAGE = new Map<string, DType>(Object.entries(STORAGE_CLASS).map(([d, s]) => [s, d as DType]));
const FOREIGN_STORAGE: Record<string, string> = {
  ShortStorage: 'int16', CharStorage: 'int8', ComplexFloatStorage: 'complex64', ComplexDoubleStorage: 'complex128',
  QInt8Storage: 'qint8', QUInt8Storage: 'quint8', QInt32Storage: 'qint32', QUInt4x2Storage: 'quint4x2', QUInt2x4Storage: 'quint2x4',
};
const ELEMENT_SIZE: Record<DType, number> = {
  float32: 4, float64: 8, float16: 2, bfloat16: 2, int64: 8, int32: 4, uint8: 1, bool: 1,
};
// torch dtype objects pickle as GLOBAL torch.<name>; load() returns the canonical name.
const TORCH_DTYPES: Record<string, string> = {
  float32: 'float32', float: 'float32', float64: 'float64', double: 'float64', float16: 'float16', half: 'float16',
  bfloat16: 'bfloat16', int64: 'int64', long: 'int64', int32: 'int32', int: 'int32', int16: 'int16', short: 'int16',
  int8: 'int8', uint8: 'uint8', bool: 'bool', complex64: 'complex64', complex128: 'complex128',
};

/** Records are copied in pieces of this size so memory stays flat for multi-GB tensors. */
const CHUNK = 64 << 20;
const U32_MAX = 0xffffffff;
const ARCHIVE = 'archive';

// ---------------------------------------------------------------------------------------------
// CRC-32: zlib's when Node has it (>= 20.15), else a table version (same polynomial).

let crcTable: Uint32Array | undefined;
function crc32(data: Uint8Array, prev: number): number {
  const native32 = (zlib as unknown as { crc32?: (d: Uint8Array, v: number) => number }).crc32;
  if (native32) return native32(data, prev);
  if (!crcTable) {
    crcTable = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c >>> 0;
    }
  }
  let c = ~prev >>> 0;
  for (let i = 0; i < data.length; i++) c = crcTable[(c ^ data[i]) & 0xff] ^ (c >>> 8);
  return ~c >>> 0;
}

function bytesOf(a: TypedArray): Buffer { return Buffer.from(a.buffer, a.byteOffset, a.byteLength); }

// ---------------------------------------------------------------------------------------------
// Pickler: mirrors CPython's C pickler at protocol 2 (memo numbering, batching of 1000, which
// opcodes), so the data.pkl we write equals the one torch.save writes for the same structure.

const enum Op {
  MARK = 0x28, STOP = 0x2e, POP = 0x30, POP_MARK = 0x31, DUP = 0x32, BINFLOAT = 0x47, BININT = 0x4a,
  BININT1 = 0x4b, BININT2 = 0x4d, NONE = 0x4e, BINPERSID = 0x51, REDUCE = 0x52, BINSTRING = 0x54,
  SHORT_BINSTRING = 0x55, BINUNICODE = 0x58, EMPTY_LIST = 0x5d, APPEND = 0x61, BUILD = 0x62, GLOBAL = 0x63,
  DICT = 0x64, APPENDS = 0x65, BINGET = 0x68, LONG_BINGET = 0x6a, LIST = 0x6c, BINPUT = 0x71,
  LONG_BINPUT = 0x72, SETITEM = 0x73, TUPLE = 0x74, SETITEMS = 0x75, EMPTY_DICT = 0x7d, EMPTY_TUPLE = 0x29,
  BINBYTES = 0x42, SHORT_BINBYTES = 0x43,
  PROTO = 0x80, NEWOBJ = 0x81, TUPLE1 = 0x85, TUPLE2 = 0x86, TUPLE3 = 0x87, NEWTRUE = 0x88, NEWFALSE = 0x89,
  LONG1 = 0x8a, LONG4 = 0x8b, SHORT_BINUNICODE = 0x8c, BINUNICODE8 = 0x8d, BINBYTES8 = 0x8e,
  STACK_GLOBAL = 0x93, MEMOIZE = 0x94, FRAME = 0x95,
}
const BATCH = 1000;

interface StorageOut { key: string; tensor: Tensor; dtype: DType; numel: number }

class Pickler {
  private buf = Buffer.allocUnsafe(1 << 16);
  private n = 0;
  private memoCount = 0;
  private memo = new Map<object, number>();      // objects by identity, as CPython's memo
  private globals = new Map<string, number>();
  private consts = new Map<string, number>();    // 'storage', 'cpu', storage keys: one object each in torch.save
  private chars = new Map<string, number>();     // '' and 1-char latin-1 strings: CPython singletons
  readonly storages: StorageOut[] = [];

  private room(k: number): void {
    if (this.n + k <= this.buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.n + k));
    this.buf.copy(next, 0, 0, this.n);
    this.buf = next;
  }
  private op(b: number): void { this.room(1); this.buf[this.n++] = b; }
  private raw(b: Uint8Array): void { this.room(b.length); this.buf.set(b, this.n); this.n += b.length; }
  private u32(v: number): void { this.room(4); this.buf.writeUInt32LE(v, this.n); this.n += 4; }

  result(): Buffer { return this.buf.subarray(0, this.n); }

  private put(obj?: object): number {
    const i = this.memoCount++;
    if (obj !== undefined) this.memo.set(obj, i);
    if (i < 256) { this.op(Op.BINPUT); this.op(i); } else { this.op(Op.LONG_BINPUT); this.u32(i); }
    return i;
  }
  private get(i: number): void {
    if (i < 256) { this.op(Op.BINGET); this.op(i); } else { this.op(Op.LONG_BINGET); this.u32(i); }
  }

  private global(module: string, name: string): void {
    const k = `${module}\n${name}`;
    const hit = this.globals.get(k);
    if (hit !== undefined) return this.get(hit);
    this.op(Op.GLOBAL);
    this.raw(Buffer.from(`${k}\n`, 'utf8'));
    this.globals.set(k, this.put());
  }

  private str(s: string, memo?: Map<string, number>): void {
    if (!memo && (s.length === 0 || (s.length === 1 && s.charCodeAt(0) < 256))) memo = this.chars;
    const hit = memo?.get(s);
    if (hit !== undefined) return this.get(hit);
    const b = Buffer.from(s, 'utf8');
    this.op(Op.BINUNICODE); this.u32(b.length); this.raw(b);
    const i = this.put();
    memo?.set(s, i);
  }

  private int(v: number | bigint): void {
    const b = BigInt(v);
    if (b >= -0x80000000n && b <= 0x7fffffffn) {
      const x = Number(b);
      if (x >= 0 && x <= 0xff) { this.op(Op.BININT1); this.op(x); }
      else if (x >= 0 && x <= 0xffff) { this.op(Op.BININT2); this.op(x & 0xff); this.op(x >> 8); }
      else { this.op(Op.BININT); this.room(4); this.buf.writeInt32LE(x, this.n); this.n += 4; }
      return;
    }
    // pickle.encode_long: minimal little-endian two's complement.
    const mag = b < 0n ? -b : b;
    let n = (mag.toString(2).length >> 3) + 1;
    const bytes: number[] = [];
    let t = BigInt.asUintN(n * 8, b);
    for (let i = 0; i < n; i++) { bytes.push(Number(t & 0xffn)); t >>= 8n; }
    if (b < 0n && n > 1 && bytes[n - 1] === 0xff && (bytes[n - 2] & 0x80) !== 0) { bytes.pop(); n--; }
    if (n < 256) { this.op(Op.LONG1); this.op(n); } else { this.op(Op.LONG4); this.u32(n); }
    this.raw(Uint8Array.from(bytes));
  }

  private float(v: number): void {
    this.op(Op.BINFLOAT); this.room(8); this.buf.writeDoubleBE(v, this.n); this.n += 8;
  }

  private intTuple(xs: number[]): void {
    if (xs.length === 0) return this.op(Op.EMPTY_TUPLE);
    if (xs.length <= 3) {
      for (const x of xs) this.int(x);
      this.op([Op.TUPLE1, Op.TUPLE2, Op.TUPLE3][xs.length - 1]);
    } else {
      this.op(Op.MARK);
      for (const x of xs) this.int(x);
      this.op(Op.TUPLE);
    }
    this.put();
  }

  dump(v: unknown): Buffer {
    this.op(Op.PROTO); this.op(2);
    this.value(v, 'obj');
    this.op(Op.STOP);
    return this.result();
  }

  private value(v: unknown, where: string): void {
    if (v === null) return this.op(Op.NONE);
    switch (typeof v) {
      case 'boolean': return this.op(v ? Op.NEWTRUE : Op.NEWFALSE);
      case 'bigint': return this.int(v);
      case 'number':
        // Integral values are ints (exactly, even beyond 2^53); -0 stays a float so its sign survives.
        return Number.isInteger(v) && !Object.is(v, -0) ? this.int(v) : this.float(v);
      case 'string': return this.str(v);
      case 'object': break;
      default: throw new TypeError(`cannot save ${typeof v} at ${where}`);
    }
    const o = v as object;
    const hit = this.memo.get(o);
    if (hit !== undefined) return this.get(hit);
    if (o instanceof Tensor) return this.tensor(o, where);
    if (Array.isArray(o)) return this.list(o, where);
    if (o instanceof Map) {
      for (const k of o.keys())
        if (typeof k !== 'string' && !(typeof k === 'number' && Number.isSafeInteger(k)))
          throw new TypeError(`cannot save a Map key of type ${typeof k} at ${where} (str and int keys only)`);
      return this.dict([...o.entries()] as [string | number, unknown][], o, where);
    }
    const proto = Object.getPrototypeOf(o);
    if (proto !== Object.prototype && proto !== null)
      throw new TypeError(`cannot save a ${o.constructor?.name ?? 'non-plain object'} at ${where} (plain objects, arrays, Maps, Tensors, numbers, strings, booleans, null, bigint)`);
    return this.dict(Object.entries(o), o, where);
  }

  private dict(entries: [string | number, unknown][], o: object, where: string): void {
    this.op(Op.EMPTY_DICT);
    this.put(o);
    const item = ([k, x]: [string | number, unknown]): void => {
      if (typeof k === 'string') this.str(k); else this.int(k);
      this.value(x, `${where}[${JSON.stringify(k)}]`);
    };
    if (entries.length === 1) { item(entries[0]); this.op(Op.SETITEM); return; }
    if (entries.length === 0) return;
    // C pickler: batches of 1000 until a batch comes out short (so len % 1000 == 0 ends with an empty one).
    let i = 0;
    let inBatch: number;
    do {
      this.op(Op.MARK);
      inBatch = 0;
      while (i < entries.length) { item(entries[i++]); if (++inBatch === BATCH) break; }
      this.op(Op.SETITEMS);
    } while (inBatch === BATCH);
  }

  private list(a: unknown[], where: string): void {
    this.op(Op.EMPTY_LIST);
    this.put(a);
    if (a.length === 1) { this.value(a[0], `${where}[0]`); this.op(Op.APPEND); return; }
    let i = 0;
    while (i < a.length) {
      this.op(Op.MARK);
      const end = Math.min(i + BATCH, a.length);
      for (; i < end; i++) this.value(a[i], `${where}[${i}]`);
      this.op(Op.APPENDS);
    }
  }

  // torch._utils._rebuild_tensor_v2(persistent storage, offset, size, stride, requires_grad, OrderedDict())
  private tensor(t: Tensor, where: string): void {
    if (t.isDisposed) throw new TypeError(`cannot save a disposed Tensor at ${where}`);
    const dtype = t.dtype;
    const shape = t.shape;
    const numel = shape.reduce((a, b) => a * b, 1);
    const key = String(this.storages.length);
    this.storages.push({ key, tensor: t, dtype, numel });
    this.global('torch._utils', '_rebuild_tensor_v2');
    this.op(Op.MARK);
    this.op(Op.MARK);
    this.str('storage', this.consts);
    this.global('torch', STORAGE_CLASS[dtype]);
    this.str(key, this.consts);
    this.str('cpu', this.consts);
    this.int(numel);
    this.op(Op.TUPLE);
    this.put();
    this.op(Op.BINPERSID);
    this.int(0);
    this.intTuple(shape);
    this.intTuple(contiguousStrides(shape));
    this.op(Op.NEWFALSE);
    this.global('collections', 'OrderedDict');
    this.op(Op.EMPTY_TUPLE);
    this.op(Op.REDUCE);
    this.put();
    this.op(Op.TUPLE);
    this.put();
    this.op(Op.REDUCE);
    this.put(t);
  }
}

/** LibTorch's default strides (sizes of 0 count as 1). */
function contiguousStrides(shape: number[]): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) { s[i] = acc; acc *= Math.max(shape[i], 1); }
  return s;
}

// ---------------------------------------------------------------------------------------------
// Zip writer: the records as PyTorch's miniz writer lays them out (STORED, no timestamps, data
// descriptors, an "FB" extra field padding every record's data to 64 bytes, zip64 end records).

interface ZipEntryOut { name: Buffer; offset: number; size: number; crc: number; flags: number }

class ZipWriter {
  private pos = 0;
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private entries: ZipEntryOut[] = [];

  constructor(private readonly fd: number, private readonly zip64At: number) {}

  private emit(b: Uint8Array): void {
    // Headers are small: gather them and write together with the next big piece.
    this.pending.push(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
    this.pendingBytes += b.byteLength;
    this.pos += b.byteLength;
    if (this.pendingBytes >= 1 << 16) this.flush();
  }

  private writeAll(b: Uint8Array): void {
    let off = 0;
    // write(2) may write less than asked (RLIMIT_FSIZE, > 2 GiB): the next call then reports why.
    while (off < b.byteLength) off += fs.writeSync(this.fd, b, off, b.byteLength - off);
  }

  flush(): void {
    if (!this.pendingBytes) return;
    this.writeAll(this.pending.length === 1 ? this.pending[0] : Buffer.concat(this.pending));
    this.pending = [];
    this.pendingBytes = 0;
  }

  private data(b: Uint8Array): void {
    this.flush();
    this.writeAll(b);
    this.pos += b.byteLength;
  }

  private zip64Extra(fields: number[]): Buffer {
    const b = Buffer.alloc(4 + 8 * fields.length);
    b.writeUInt16LE(0x0001, 0);
    b.writeUInt16LE(8 * fields.length, 2);
    fields.forEach((f, i) => b.writeBigUInt64LE(BigInt(f), 4 + 8 * i));
    return b;
  }

  /** Adds one record of `size` bytes; `produce` must emit exactly that many through `sink`. */
  add(name: string, size: number, produce: (sink: (chunk: Uint8Array) => void) => void): void {
    const nameBuf = Buffer.from(`${ARCHIVE}/${name}`, 'utf8');
    const offset = this.pos;
    const bigSize = size >= this.zip64At;
    const bigOffset = offset >= this.zip64At;
    // miniz fills the local zip64 field before the data is written: the size, then 0 where the
    // compressed size goes (the data descriptor and central directory carry the real values).
    const z64Fields = [...(bigSize ? [size, 0] : []), ...(bigOffset ? [offset] : [])];
    const z64 = z64Fields.length ? this.zip64Extra(z64Fields) : Buffer.alloc(0);
    const start = offset + 30 + nameBuf.length + z64.length + 4;
    const pad = (64 - (start % 64)) % 64;
    const fb = Buffer.alloc(4 + pad, 'Z'.charCodeAt(0));
    fb.write('FB', 0, 'latin1');
    fb.writeUInt16LE(pad, 2);
    const flags = size > 0 ? 0x0808 : 0x0800;  // data descriptor follows (only when there is data); UTF-8 name
    const h = Buffer.alloc(30);
    h.writeUInt32LE(0x04034b50, 0);
    h.writeUInt16LE(flags, 6);
    h.writeUInt16LE(nameBuf.length, 26);
    h.writeUInt16LE(z64.length + fb.length, 28);
    this.emit(h); this.emit(nameBuf); this.emit(z64); this.emit(fb);
    let crc = 0;
    let written = 0;
    produce((chunk) => {
      crc = crc32(chunk, crc);
      written += chunk.byteLength;
      if (written > size) throw new Error(`record ${name} is larger than announced (${size} bytes)`);
      this.data(chunk);
    });
    if (written !== size) throw new Error(`record ${name} has ${written} bytes, expected ${size}`);
    if (size > 0) {
      const d = Buffer.alloc(z64Fields.length ? 24 : 16);
      d.writeUInt32LE(0x08074b50, 0);
      d.writeUInt32LE(crc, 4);
      if (z64Fields.length) { d.writeBigUInt64LE(BigInt(size), 8); d.writeBigUInt64LE(BigInt(size), 16); }
      else { d.writeUInt32LE(size, 8); d.writeUInt32LE(size, 12); }
      this.emit(d);
    }
    this.entries.push({ name: nameBuf, offset, size, crc, flags });
  }

  finish(): void {
    const cap = (v: number): number => (v >= this.zip64At ? U32_MAX : v);
    const cdOffset = this.pos;
    for (const e of this.entries) {
      const bigSize = e.size >= this.zip64At;
      const bigOffset = e.offset >= this.zip64At;
      const fields = [...(bigSize ? [e.size, e.size] : []), ...(bigOffset ? [e.offset] : [])];
      const extra = fields.length ? this.zip64Extra(fields) : Buffer.alloc(0);
      const h = Buffer.alloc(46);
      h.writeUInt32LE(0x02014b50, 0);
      h.writeUInt16LE(e.flags, 8);
      h.writeUInt32LE(e.crc, 16);
      h.writeUInt32LE(cap(e.size), 20);
      h.writeUInt32LE(cap(e.size), 24);
      h.writeUInt16LE(e.name.length, 28);
      h.writeUInt16LE(extra.length, 30);
      h.writeUInt32LE(cap(e.offset), 42);
      this.emit(h); this.emit(e.name); this.emit(extra);
    }
    const cdSize = this.pos - cdOffset;
    const n = this.entries.length;
    const z64End = this.pos;
    const r = Buffer.alloc(56);
    r.writeUInt32LE(0x06064b50, 0);
    r.writeBigUInt64LE(44n, 4);
    r.writeUInt16LE(0x031e, 12);
    r.writeUInt16LE(0x002d, 14);
    r.writeBigUInt64LE(BigInt(n), 24);
    r.writeBigUInt64LE(BigInt(n), 32);
    r.writeBigUInt64LE(BigInt(cdSize), 40);
    r.writeBigUInt64LE(BigInt(cdOffset), 48);
    const loc = Buffer.alloc(20);
    loc.writeUInt32LE(0x07064b50, 0);
    loc.writeBigUInt64LE(BigInt(z64End), 8);
    loc.writeUInt32LE(1, 16);
    const end = Buffer.alloc(22);
    end.writeUInt32LE(0x06054b50, 0);
    end.writeUInt16LE(Math.min(n, 0xffff), 8);
    end.writeUInt16LE(Math.min(n, 0xffff), 10);
    end.writeUInt32LE(cap(cdSize), 12);
    end.writeUInt32LE(cap(cdOffset), 16);
    this.emit(r); this.emit(loc); this.emit(end);
    this.flush();
  }
}

/** Emits a tensor's bytes (contiguous, little-endian, on CPU) in pieces of at most CHUNK bytes. */
function tensorBytes(t: Tensor, numel: number, dtype: DType, sink: (chunk: Uint8Array) => void): void {
  const itemsize = ELEMENT_SIZE[dtype];
  if (numel * itemsize <= CHUNK) {
    sink(bytesOf(t.toTypedArray()));
    return;
  }
  // Big tensors: flatten once (a view when already contiguous) and copy out one slice at a time,
  // so neither JS memory nor a CUDA->CPU copy ever holds the whole tensor twice.
  const flat = t.reshape(numel);
  try {
    const per = Math.floor(CHUNK / itemsize);
    for (let s = 0; s < numel; s += per) {
      const piece = flat.narrow(0, s, Math.min(per, numel - s));
      try { sink(bytesOf(piece.toTypedArray())); } finally { piece.dispose(); }
    }
  } finally {
    flat.dispose();
  }
}

/**
 * Writes `obj` (nested plain objects, arrays, Maps, Tensors, numbers, bigints, strings, booleans,
 * null) to `file` in PyTorch's format: Python's `torch.load(file, weights_only=True)` reads it.
 * Tensors are written contiguous (CUDA ones copied to CPU); one Tensor object referenced twice is
 * stored once, but two Tensor objects viewing one storage are stored as two. The write is atomic: a temp file in the same folder, fsync, rename; on any failure
 * the previous `file` is untouched and the Error names `file`.
 */
export function save(file: string, obj: Saveable, opts: SaveOptions = {}): void {
  let target = path.resolve(file);
  let pickle: Buffer;
  let storages: StorageOut[];
  try {
    const p = new Pickler();
    pickle = p.dump(obj);
    storages = p.storages;
  } catch (e) {
    throw new SerializationError(`save('${file}'): ${(e as Error).message}`, { cause: e });
  }
  // Write through a symlink to its target, as an in-place write would.
  try { target = fs.realpathSync(target); } catch { /* does not exist yet */ }
  const dir = path.dirname(target);
  const tmp = tempPathFor(target);
  let fd = -1;
  try {
    fd = fs.openSync(tmp, 'wx', 0o666);
    try { fs.fchmodSync(fd, fs.statSync(target).mode & 0o7777); } catch { /* new file: umask applies */ }
    const zip = new ZipWriter(fd, opts.zip64 === 'always' ? 0 : U32_MAX);
    zip.add('data.pkl', pickle.length, (sink) => sink(pickle));
    const order = Buffer.from('little');
    zip.add('byteorder', order.length, (sink) => sink(order));
    // torch.save writes storages in sorted key order (string order: "10" before "2").
    for (const s of [...storages].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0)))
      zip.add(`data/${s.key}`, s.numel * ELEMENT_SIZE[s.dtype], (sink) => tensorBytes(s.tensor, s.numel, s.dtype, sink));
    const version = Buffer.from('3\n');
    zip.add('version', version.length, (sink) => sink(version));
    zip.finish();
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fd = -1;
    fs.renameSync(tmp, target);
  } catch (e) {
    if (fd >= 0) try { fs.closeSync(fd); } catch { /* already failing */ }
    try { fs.unlinkSync(tmp); } catch { /* never created */ }
    throw new SerializationError(`save('${file}'): ${(e as Error).message}`, { cause: e });
  }
  syncDir(dir);
}

// ---------------------------------------------------------------------------------------------
// Zip reader: central directory (zip64 aware), STORED or DEFLATED records, CRC checked.

interface ZipEntryIn { name: string; method: number; flags: number; crc: number; compSize: number; size: number; offset: number }

class ZipReader {
  readonly entries = new Map<string, ZipEntryIn>();
  readonly order: string[] = [];
  private cdOffset = 0;

  constructor(private readonly fd: number, private readonly fileSize: number, private readonly fail: (m: string) => never) {
    const tailLen = Math.min(fileSize, 22 + 0xffff);
    const tail = this.read(fileSize - tailLen, tailLen);
    let eocd = -1;
    // The last signature whose comment ends the file (tensor bytes may contain the signature too).
    for (let i = tail.length - 22; i >= 0; i--) {
      if (tail.readUInt32LE(i) === 0x06054b50 && i + 22 + tail.readUInt16LE(i + 20) === tail.length) { eocd = i; break; }
    }
    if (eocd < 0) fail('is truncated or not a zip archive (no end-of-central-directory record)');
    let count = tail.readUInt16LE(eocd + 10);
    let cdSize = tail.readUInt32LE(eocd + 12);
    let cdOffset = tail.readUInt32LE(eocd + 16);
    const eocdAt = fileSize - tailLen + eocd;
    if (eocdAt >= 20) {
      const loc = this.read(eocdAt - 20, 20);
      if (loc.readUInt32LE(0) === 0x07064b50) {
        const at = Number(loc.readBigUInt64LE(8));
        if (at + 56 > eocdAt) fail('is corrupt (zip64 end record out of range)');
        const r = this.read(at, 56);
        if (r.readUInt32LE(0) !== 0x06064b50) fail('is corrupt (bad zip64 end record)');
        count = Number(r.readBigUInt64LE(32));
        cdSize = Number(r.readBigUInt64LE(40));
        cdOffset = Number(r.readBigUInt64LE(48));
      }
    }
    if (cdOffset + cdSize > eocdAt) fail('is truncated or corrupt (central directory out of range)');
    this.cdOffset = cdOffset;
    const cd = this.read(cdOffset, cdSize);
    let p = 0;
    for (let i = 0; i < count; i++) {
      if (p + 46 > cd.length || cd.readUInt32LE(p) !== 0x02014b50) fail('is corrupt (bad central directory entry)');
      const flags = cd.readUInt16LE(p + 8);
      const method = cd.readUInt16LE(p + 10);
      const crc = cd.readUInt32LE(p + 16);
      let compSize = cd.readUInt32LE(p + 20);
      let size = cd.readUInt32LE(p + 24);
      const nameLen = cd.readUInt16LE(p + 28);
      const extraLen = cd.readUInt16LE(p + 30);
      const commentLen = cd.readUInt16LE(p + 32);
      let offset = cd.readUInt32LE(p + 42);
      if (p + 46 + nameLen + extraLen + commentLen > cd.length) fail('is corrupt (central directory entry out of range)');
      const name = cd.toString('utf8', p + 46, p + 46 + nameLen);
      // zip64 extended information: 64-bit values for exactly the fields that read 0xFFFFFFFF.
      for (let e = p + 46 + nameLen, end = e + extraLen; e + 4 <= end;) {
        const id = cd.readUInt16LE(e);
        const len = cd.readUInt16LE(e + 2);
        if (id === 0x0001) {
          let q = e + 4;
          const next = (): number => {
            if (q + 8 > e + 4 + len) fail(`is corrupt (short zip64 field for ${name})`);
            const v = Number(cd.readBigUInt64LE(q)); q += 8; return v;
          };
          if (size === U32_MAX) size = next();
          if (compSize === U32_MAX) compSize = next();
          if (offset === U32_MAX) offset = next();
        }
        e += 4 + len;
      }
      if (!this.entries.has(name)) this.order.push(name);
      this.entries.set(name, { name, method, flags, crc, compSize, size, offset });
      p += 46 + nameLen + extraLen + commentLen;
    }
  }

  read(at: number, len: number): Buffer {
    const b = Buffer.allocUnsafeSlow(len);
    this.readInto(b, at);
    return b;
  }

  private readInto(b: Uint8Array, at: number): void {
    let off = 0;
    while (off < b.byteLength) {
      const got = fs.readSync(this.fd, b, off, b.byteLength - off, at + off);
      if (got === 0) this.fail(`is truncated (wanted bytes ${at}..${at + b.byteLength}, file has ${this.fileSize})`);
      off += got;
    }
  }

  private dataStart(e: ZipEntryIn): number {
    const h = this.read(e.offset, 30);
    if (h.readUInt32LE(0) !== 0x04034b50) this.fail(`is corrupt (bad local header for ${e.name})`);
    const start = e.offset + 30 + h.readUInt16LE(26) + h.readUInt16LE(28);
    if (start + e.compSize > this.cdOffset) this.fail(`is corrupt (record ${e.name} overlaps the central directory)`);
    return start;
  }

  /**
   * Streams a record's bytes to `sink` in pieces of at most CHUNK bytes (each a fresh,
   * 8-byte-aligned buffer the sink may keep), then checks its CRC-32.
   */
  stream(e: ZipEntryIn, sink: (chunk: Buffer, offset: number) => void): void {
    if (e.flags & 1) this.fail(`record ${e.name} is encrypted`);
    const start = this.dataStart(e);
    let crc = 0;
    if (e.method === 0) {
      if (e.compSize !== e.size) this.fail(`is corrupt (stored record ${e.name} with two sizes)`);
      for (let o = 0; o < e.size; o += CHUNK) {
        const piece = this.read(start + o, Math.min(CHUNK, e.size - o));
        crc = crc32(piece, crc);
        sink(piece, o);
      }
    } else if (e.method === 8) {
      let out: Buffer;
      try { out = zlib.inflateRawSync(this.read(start, e.compSize)); } catch (err) { this.fail(`record ${e.name} does not inflate: ${(err as Error).message}`); }
      if (out.length !== e.size) this.fail(`record ${e.name} inflates to ${out.length} bytes, expected ${e.size}`);
      crc = crc32(out, 0);
      for (let o = 0; o < out.length; o += CHUNK) {
        // Fresh buffers: Buffer.from() may hand out pool slices whose offsets break typed-array alignment.
        const piece = out.subarray(o, Math.min(o + CHUNK, out.length));
        const own = Buffer.allocUnsafeSlow(piece.length);
        piece.copy(own);
        sink(own, o);
      }
    } else {
      this.fail(`record ${e.name} uses zip compression method ${e.method} (only stored and deflate are read)`);
    }
    if (crc !== e.crc) this.fail(`is corrupt (CRC-32 mismatch in ${e.name})`);
  }

  whole(e: ZipEntryIn): Buffer {
    const parts: Buffer[] = [];
    this.stream(e, (c) => parts.push(c));
    return parts.length === 1 ? parts[0] : Buffer.concat(parts);
  }
}

// ---------------------------------------------------------------------------------------------
// Unpickler: a stack machine over the opcodes pickle emits (protocols 2-5). GLOBAL only resolves
// names in the table below, the way torch.load(weights_only=True) restricts them.

class PyGlobal {
  constructor(readonly module: string, readonly name: string) {}
  get full(): string { return `${this.module}.${this.name}`; }
}

class PyDict {
  readonly items = new Map<unknown, unknown>();
  attrs: PyDict | undefined;
}

class StorageRef {
  tensor: Tensor | undefined;
  constructor(readonly key: string, readonly dtype: DType, readonly numel: number) {}
}

const ALLOWED_GLOBALS = new Set([
  'collections.OrderedDict',
  'torch._utils._rebuild_tensor', 'torch._utils._rebuild_tensor_v2',
  'torch._utils._rebuild_parameter', 'torch._utils._rebuild_parameter_with_state',
  'torch._tensor._rebuild_from_type_v2', 'torch.Tensor', 'torch.nn.parameter.Parameter',
  'torch.Size', 'torch.device', '_codecs.encode',
]);

const asStrided = op('aten::as_strided');

class Unpickler {
  private stack: unknown[] = [];
  private marks: unknown[][] = [];
  private memo = new Map<number, unknown>();
  private p = 0;
  readonly storages = new Map<string, StorageRef>();

  constructor(
    private readonly data: Buffer,
    private readonly fail: (m: string) => never,
    private readonly readStorage: (ref: StorageRef) => Tensor,
    private readonly device: string,
    /** Every tensor made so far, freed if loading fails. */
    private readonly created: Tensor[],
  ) {}

  private need(k: number): void {
    if (this.p + k > this.data.length) this.fail('is corrupt (data.pkl ends in the middle of an opcode)');
  }
  private u8(): number { this.need(1); return this.data[this.p++]; }
  private u16(): number { this.need(2); const v = this.data.readUInt16LE(this.p); this.p += 2; return v; }
  private u32(): number { this.need(4); const v = this.data.readUInt32LE(this.p); this.p += 4; return v; }
  private u64(): number {
    this.need(8);
    const v = this.data.readBigUInt64LE(this.p); this.p += 8;
    if (v > BigInt(this.data.length)) this.fail('is corrupt (length in data.pkl exceeds the record)');
    return Number(v);
  }
  private bytes(n: number): Buffer { this.need(n); const b = this.data.subarray(this.p, this.p + n); this.p += n; return b; }
  private line(): string {
    const end = this.data.indexOf(0x0a, this.p);
    if (end < 0) this.fail('is corrupt (unterminated line in data.pkl)');
    const s = this.data.toString('utf8', this.p, end);
    this.p = end + 1;
    return s;
  }
  private pop(): unknown {
    if (!this.stack.length) this.fail('is corrupt (pickle stack underflow)');
    return this.stack.pop();
  }
  private top(): unknown {
    if (!this.stack.length) this.fail('is corrupt (pickle stack underflow)');
    return this.stack[this.stack.length - 1];
  }
  private popMark(): unknown[] {
    const items = this.stack;
    const prev = this.marks.pop();
    if (!prev) this.fail('is corrupt (pickle MARK missing)');
    this.stack = prev;
    return items;
  }
  private memoGet(i: number): unknown {
    if (!this.memo.has(i)) this.fail(`is corrupt (pickle memo ${i} missing)`);
    return this.memo.get(i);
  }
  private longLE(b: Buffer): number | bigint {
    if (b.length === 0) return 0;
    let v = BigInt(`0x${Buffer.from(b).reverse().toString('hex')}`);
    if (b[b.length - 1] & 0x80) v -= 1n << BigInt(8 * b.length);
    return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  }

  run(): unknown {
    const d = this.data;
    for (;;) {
      const code = this.u8();
      switch (code) {
        case Op.PROTO: if (this.u8() > 5) this.fail('uses an unknown pickle protocol'); break;
        case Op.FRAME: this.bytes(8); break;
        case Op.STOP: return this.pop();
        case Op.MARK: this.marks.push(this.stack); this.stack = []; break;
        case Op.POP: this.pop(); break;
        case Op.POP_MARK: this.popMark(); break;
        case Op.DUP: this.stack.push(this.top()); break;
        case Op.NONE: this.stack.push(null); break;
        case Op.NEWTRUE: this.stack.push(true); break;
        case Op.NEWFALSE: this.stack.push(false); break;
        case Op.BININT: this.need(4); this.stack.push(d.readInt32LE(this.p)); this.p += 4; break;
        case Op.BININT1: this.stack.push(this.u8()); break;
        case Op.BININT2: this.stack.push(this.u16()); break;
        case Op.LONG1: this.stack.push(this.longLE(this.bytes(this.u8()))); break;
        case Op.LONG4: this.stack.push(this.longLE(this.bytes(this.u32()))); break;
        case Op.BINFLOAT: this.need(8); this.stack.push(d.readDoubleBE(this.p)); this.p += 8; break;
        case Op.SHORT_BINUNICODE: case Op.SHORT_BINSTRING: this.stack.push(this.bytes(this.u8()).toString('utf8')); break;
        case Op.BINUNICODE: case Op.BINSTRING: this.stack.push(this.bytes(this.u32()).toString('utf8')); break;
        case Op.BINUNICODE8: this.stack.push(this.bytes(this.u64()).toString('utf8')); break;
        case Op.SHORT_BINBYTES: this.stack.push(Uint8Array.from(this.bytes(this.u8()))); break;
        case Op.BINBYTES: this.stack.push(Uint8Array.from(this.bytes(this.u32()))); break;
        case Op.BINBYTES8: this.stack.push(Uint8Array.from(this.bytes(this.u64()))); break;
        case Op.EMPTY_TUPLE: this.stack.push([]); break;
        case Op.TUPLE: case Op.LIST: { const items = this.popMark(); this.stack.push(items); break; }
        case Op.TUPLE1: { const a = this.pop(); this.stack.push([a]); break; }
        case Op.TUPLE2: { const b = this.pop(); const a = this.pop(); this.stack.push([a, b]); break; }
        case Op.TUPLE3: { const c = this.pop(); const b = this.pop(); const a = this.pop(); this.stack.push([a, b, c]); break; }
        case Op.EMPTY_LIST: this.stack.push([]); break;
        case Op.APPEND: { const v = this.pop(); this.listOf(this.top()).push(v); break; }
        case Op.APPENDS: { const vs = this.popMark(); this.listOf(this.top()).push(...vs); break; }
        case Op.EMPTY_DICT: this.stack.push(new PyDict()); break;
        case Op.DICT: {
          const kv = this.popMark();
          const dict = new PyDict();
          for (let i = 0; i + 1 < kv.length; i += 2) dict.items.set(kv[i], kv[i + 1]);
          this.stack.push(dict);
          break;
        }
        case Op.SETITEM: { const v = this.pop(); const k = this.pop(); this.dictOf(this.top()).items.set(k, v); break; }
        case Op.SETITEMS: {
          const kv = this.popMark();
          if (kv.length % 2) this.fail('is corrupt (SETITEMS with an odd number of items)');
          const dict = this.dictOf(this.top());
          for (let i = 0; i < kv.length; i += 2) dict.items.set(kv[i], kv[i + 1]);
          break;
        }
        case Op.BINPUT: this.memo.set(this.u8(), this.top()); break;
        case Op.LONG_BINPUT: this.memo.set(this.u32(), this.top()); break;
        case Op.MEMOIZE: this.memo.set(this.memo.size, this.top()); break;
        case Op.BINGET: this.stack.push(this.memoGet(this.u8())); break;
        case Op.LONG_BINGET: this.stack.push(this.memoGet(this.u32())); break;
        case Op.GLOBAL: { const module = this.line(); const name = this.line(); this.stack.push(this.global(module, name)); break; }
        case Op.STACK_GLOBAL: {
          const name = this.pop(); const module = this.pop();
          if (typeof module !== 'string' || typeof name !== 'string') this.fail('is corrupt (STACK_GLOBAL without strings)');
          this.stack.push(this.global(module, name));
          break;
        }
        case Op.REDUCE: {
          const args = this.pop(); const fn = this.pop();
          if (!Array.isArray(args)) this.fail('is corrupt (REDUCE without an argument tuple)');
          this.stack.push(this.call(fn, args));
          break;
        }
        case Op.BUILD: { const state = this.pop(); this.build(this.top(), state); break; }
        case Op.BINPERSID: this.stack.push(this.persistent(this.pop())); break;
        default:
          this.fail(`uses pickle opcode 0x${code.toString(16)} at byte ${this.p - 1} of data.pkl, which load() does not read ` +
            '(torch.save writes protocol 2 with tensors, dicts, lists, tuples and scalars)');
      }
    }
  }

  private listOf(v: unknown): unknown[] {
    if (!Array.isArray(v)) this.fail('is corrupt (APPEND to a non-list)');
    return v;
  }
  private dictOf(v: unknown): PyDict {
    if (!(v instanceof PyDict)) this.fail('is corrupt (SETITEM on a non-dict)');
    return v;
  }

  private global(module: string, name: string): unknown {
    const full = `${module}.${name}`;
    if (module === 'torch' && Object.hasOwn(TORCH_DTYPES, name)) return TORCH_DTYPES[name];
    if (module === 'torch' && (DTYPE_OF_STORAGE.has(name) || Object.hasOwn(FOREIGN_STORAGE, name) || name === 'UntypedStorage'))
      return new PyGlobal(module, name);
    if (ALLOWED_GLOBALS.has(full)) return new PyGlobal(module, name);
    this.fail(`refers to the Python global '${full}', which load() does not allow (only PyTorch tensors, ` +
      'storages and standard containers are read; nothing in the file is executed)');
  }

  // ('storage', storage class, key, location, numel) -> the storage of record data/<key>.
  private persistent(pid: unknown): StorageRef {
    if (!Array.isArray(pid) || pid[0] !== 'storage' || pid.length < 5) this.fail('is corrupt (unknown persistent id in data.pkl)');
    const [, cls, key, , numel] = pid;
    if (!(cls instanceof PyGlobal) || typeof key !== 'string' || typeof numel !== 'number' || !Number.isSafeInteger(numel) || numel < 0)
      this.fail('is corrupt (malformed storage reference in data.pkl)');
    if (Object.hasOwn(FOREIGN_STORAGE, cls.name)) this.fail(`holds a tensor of dtype ${FOREIGN_STORAGE[cls.name]}, which lib/torch does not support`);
    const dtype = cls.name === 'UntypedStorage' ? 'uint8' : DTYPE_OF_STORAGE.get(cls.name);
    if (!dtype) this.fail(`refers to an unknown storage class torch.${cls.name}`);
    const prev = this.storages.get(key);
    if (prev) {
      if (prev.dtype !== dtype || prev.numel !== numel) this.fail(`is corrupt (storage ${key} referenced with two types or sizes)`);
      return prev;
    }
    const ref = new StorageRef(key, dtype, numel);
    this.storages.set(key, ref);
    return ref;
  }

  private ints(v: unknown, what: string): number[] {
    if (!Array.isArray(v) || !v.every((x) => typeof x === 'number' && Number.isSafeInteger(x)))
      this.fail(`is corrupt (tensor ${what} is not a tuple of ints)`);
    return v as number[];
  }

  private rebuildTensor(storage: unknown, offset: unknown, sizeV: unknown, strideV: unknown, requiresGrad: unknown): Tensor {
    if (!(storage instanceof StorageRef)) this.fail('is corrupt (tensor without a storage)');
    if (typeof offset !== 'number' || !Number.isSafeInteger(offset) || offset < 0) this.fail('is corrupt (bad tensor storage offset)');
    const size = this.ints(sizeV, 'size');
    const stride = this.ints(strideV, 'stride');
    if (size.length !== stride.length || size.some((s) => s < 0) || stride.some((s) => s < 0))
      this.fail(`is corrupt (tensor size [${size}] and stride [${stride}] do not match)`);
    // Python's as_strided check, made here so the message names the file.
    if (!size.includes(0)) {
      const last = offset + size.reduce((a, s, i) => a + (s - 1) * stride[i], 0);
      if (last >= storage.numel)
        this.fail(`is corrupt (tensor of size [${size}], stride [${stride}], offset ${offset} reaches past its storage of ${storage.numel} elements)`);
    }
    if (!storage.tensor) storage.tensor = this.readStorage(storage);
    let t = w(native.call(asStrided(), storage.tensor.id, size, stride, offset));
    this.created.push(t);
    if (this.device !== 'cpu') {
      const moved = t.to(this.device);
      this.created.push(moved);
      t.dispose();
      t = moved;
    }
    if (requiresGrad === true && isFloating(storage.dtype)) t.requiresGrad_(true);
    return t;
  }

  private call(fn: unknown, args: unknown[]): unknown {
    if (!(fn instanceof PyGlobal)) this.fail('is corrupt (REDUCE of something that is not a callable)');
    switch (fn.full) {
      case 'torch._utils._rebuild_tensor_v2':
        return this.rebuildTensor(args[0], args[1], args[2], args[3], args[4]);
      case 'torch._utils._rebuild_tensor':
        return this.rebuildTensor(args[0], args[1], args[2], args[3], false);
      case 'torch._utils._rebuild_parameter':
      case 'torch._utils._rebuild_parameter_with_state': {
        const [data, requiresGrad] = args;
        if (!(data instanceof Tensor)) this.fail('is corrupt (Parameter without a tensor)');
        if (requiresGrad === true && isFloating(data.dtype)) data.requiresGrad_(true);
        return data;
      }
      case 'torch._tensor._rebuild_from_type_v2': {
        // (func, type, args, python state): the tensor itself comes from func(*args).
        const [inner, , innerArgs] = args;
        if (!Array.isArray(innerArgs)) this.fail('is corrupt (_rebuild_from_type_v2 arguments)');
        return this.call(inner, innerArgs);
      }
      case 'collections.OrderedDict': {
        const dict = new PyDict();
        if (Array.isArray(args[0])) for (const kv of args[0]) if (Array.isArray(kv) && kv.length === 2) dict.items.set(kv[0], kv[1]);
        return dict;
      }
      case 'torch.Size': return [...this.ints(args[0] ?? [], 'Size')];
      case 'torch.device': {
        const [type, index] = args;
        if (typeof type !== 'string') this.fail('is corrupt (torch.device without a type)');
        return typeof index === 'number' && !type.includes(':') ? `${type}:${index}` : type;
      }
      case '_codecs.encode': {
        // How protocol 2 pickles bytes: _codecs.encode(latin-1 text, 'latin1').
        const [text, enc] = args;
        if (typeof text !== 'string' || (enc !== 'latin1' && enc !== 'latin-1')) this.fail('is corrupt (_codecs.encode arguments)');
        return Uint8Array.from(Buffer.from(text, 'latin1'));
      }
      default:
        this.fail(`calls '${fn.full}', which load() cannot construct`);
    }
  }

  private build(target: unknown, state: unknown): void {
    if (target instanceof PyDict) {
      if (state instanceof PyDict) target.attrs = state;
      else if (state !== null) this.fail('is corrupt (unexpected BUILD state for a dict)');
      return;
    }
    // Python-level state of a tensor (set attributes): nothing to restore in lib/torch.
    if (target instanceof Tensor) return;
    this.fail('is corrupt (BUILD on an object load() did not create)');
  }
}

/** Turns the VM's Python objects into the JS values of `Loaded`, keeping shared references shared. */
function toJs(v: unknown, seen: Map<object, unknown>, fail: (m: string) => never): unknown {
  if (v === null || typeof v !== 'object') return v;
  if (v instanceof Tensor || v instanceof Uint8Array) return v;
  const done = seen.get(v);
  if (done !== undefined) return done;
  if (Array.isArray(v)) {
    seen.set(v, v);
    for (let i = 0; i < v.length; i++) v[i] = toJs(v[i], seen, fail);
    return v;
  }
  if (v instanceof PyDict) {
    const stringKeys = [...v.items.keys()].every((k) => typeof k === 'string');
    let out: Record<string, unknown> | Map<unknown, unknown>;
    if (stringKeys) {
      const o: Record<string, unknown> = {};
      seen.set(v, o);
      for (const [k, x] of v.items)
        Object.defineProperty(o, k as string, { value: toJs(x, seen, fail), enumerable: true, writable: true, configurable: true });
      out = o;
    } else {
      const m = new Map<unknown, unknown>();
      seen.set(v, m);
      for (const [k, x] of v.items) m.set(toJs(k, seen, fail), toJs(x, seen, fail));
      out = m;
    }
    if (v.attrs) Object.defineProperty(out, pythonAttributes, { value: toJs(v.attrs, seen, fail), enumerable: false });
    return out;
  }
  if (v instanceof StorageRef) fail('holds a bare storage (torch.save of a storage, not a tensor), which load() does not return');
  if (v instanceof PyGlobal) fail(`holds the Python object ${v.full} itself, which has no lib/torch value`);
  fail('is corrupt (unexpected object in data.pkl)');
}

const LEGACY_MAGIC = Buffer.from([0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19]);

/**
 * Reads a file written by save() or by Python's torch.save (zip format): state dicts, nested
 * dicts/lists/tuples, tensors of every lib/torch dtype (views sharing a storage stay views of one
 * storage, as in Python), ints, floats, bools, strings, None. Nothing in the file is executed:
 * Python globals other than PyTorch's tensor/storage rebuilders and standard containers are errors.
 */
export function load<T = Loaded>(file: string, opts: LoadOptions = {}): T {
  const fail: (m: string) => never = (m) => { throw new SerializationError(`load('${file}'): file ${m}`); };
  let device: string;
  try { device = checkDevice(opts.device ?? 'cpu'); } catch (e) { throw new SerializationError(`load('${file}'): ${(e as Error).message}`); }
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch (e) {
    throw new SerializationError(`load('${file}'): ${(e as Error).message}`, { cause: e });
  }
  const created: Tensor[] = [];
  let ok = false;
  try {
    const st = fs.fstatSync(fd);
    if (st.isDirectory()) fail('is a directory');
    const size = st.size;
    const head = Buffer.alloc(Math.min(size, 512));
    if (head.length) fs.readSync(fd, head, 0, head.length, 0);
    if (size === 0) fail('is empty');
    if (head.length < 4 || head.readUInt32LE(0) !== 0x04034b50) {
      if (head.subarray(0, LEGACY_MAGIC.length).equals(LEGACY_MAGIC) || (head.length >= 262 && head.toString('latin1', 257, 262) === 'ustar'))
        fail('uses the legacy format: re-save with torch.save(..., _use_new_zipfile_serialization=True)');
      if (head[0] === Op.PROTO) fail('is a plain pickle, not a torch.save archive');
      fail('is not a PyTorch checkpoint (no zip signature)');
    }
    const zip = new ZipReader(fd, size, fail);
    if (!zip.order.length) fail('is an empty zip archive');
    // Like PyTorch's reader: every record lives in the folder of the first one.
    const prefix = zip.order[0].split('/')[0];
    const rec = (name: string): ZipEntryIn | undefined => zip.entries.get(`${prefix}/${name}`);
    // TorchScript archives have a data.pkl too, but it pickles the module's __torch__ classes.
    if (rec('constants.pkl') || zip.order.some((n) => n.startsWith(`${prefix}/code/`)))
      fail('is a TorchScript archive (torch.jit.save): load it with torch.jit.load, not torch.load');
    const pkl = rec('data.pkl');
    if (!pkl) fail(`is a zip archive without ${prefix}/data.pkl: not written by torch.save`);
    const versionRec = rec('version') ?? rec('.data/version');
    if (versionRec) {
      const v = Number(zip.whole(versionRec).toString('latin1').trim());
      if (!Number.isInteger(v) || v < 1) fail('is corrupt (bad version record)');
    }
    const orderRec = rec('byteorder');
    const order = orderRec ? zip.whole(orderRec).toString('latin1') : 'little';
    if (order !== 'little' && order !== 'big') fail(`is corrupt (byteorder '${order}')`);
    const readStorage = (ref: StorageRef): Tensor => {
      const e = rec(`data/${ref.key}`);
      if (!e) fail(`is corrupt (record data/${ref.key} is missing)`);
      const itemsize = ELEMENT_SIZE[ref.dtype];
      const nbytes = ref.numel * itemsize;
      if (e.size < nbytes) fail(`is corrupt (record data/${ref.key} has ${e.size} bytes, its storage needs ${nbytes})`);
      const typed = (b: Buffer, n: number): TypedArray => {
        if (order === 'big') { if (itemsize === 2) b.swap16(); else if (itemsize === 4) b.swap32(); else if (itemsize === 8) b.swap64(); }
        const ab = b.buffer;
        switch (ref.dtype) {
          case 'float32': return new Float32Array(ab, b.byteOffset, n);
          case 'float64': return new Float64Array(ab, b.byteOffset, n);
          case 'float16': case 'bfloat16': return new Uint16Array(ab, b.byteOffset, n);
          case 'int64': return new BigInt64Array(ab, b.byteOffset, n);
          case 'int32': return new Int32Array(ab, b.byteOffset, n);
          case 'uint8': case 'bool': return new Uint8Array(ab, b.byteOffset, n);
        }
      };
      if (nbytes <= CHUNK) {
        // One piece when the record is no bigger than its storage (always, for torch.save files).
        let b: Buffer | undefined;
        zip.stream(e, (c, off) => {
          if (off === 0 && c.length >= nbytes) b = c;
          else { b ??= Buffer.allocUnsafeSlow(nbytes); if (off < nbytes) c.copy(b, off, 0, Math.min(c.length, nbytes - off)); }
        });
        const t = tensor(typed((b ?? Buffer.alloc(0)).subarray(0, nbytes), ref.numel), { dtype: ref.dtype, shape: [ref.numel] });
        created.push(t);
        return t;
      }
      // Multi-GB storages: fill a LibTorch tensor piece by piece instead of one huge JS buffer.
      const t = empty([ref.numel], { dtype: ref.dtype });
      created.push(t);
      zip.stream(e, (c, off) => {
        const end = Math.min(off + c.length, nbytes);
        if (end <= off) return;
        const piece = tensor(typed(c.subarray(0, end - off), (end - off) / itemsize), { dtype: ref.dtype });
        const dst = t.narrow(0, off / itemsize, (end - off) / itemsize);
        try { dst.copy_(piece); } finally { dst.dispose(); piece.dispose(); }
      });
      return t;
    };
    const vm = new Unpickler(zip.whole(pkl), fail, readStorage, device, created);
    const out = toJs(vm.run(), new Map(), fail) as T;
    ok = true;
    // The storages' memory lives on in the views made of them.
    for (const s of vm.storages.values()) s.tensor?.dispose();
    return out;
  } catch (e) {
    if (e instanceof SerializationError) throw e;
    throw new SerializationError(`load('${file}'): ${(e as Error).message}`, { cause: e });
  } finally {
    if (!ok) for (const t of created) t.dispose();
    fs.closeSync(fd);
  }
}
