// Detectron2's own checkpoint format (.pkl): a Python pickle of {"model": {name: numpy.ndarray},
// "__author__": ..., "matching_heuristics": True}, as its model-zoo files and the authors'
// converters write. Arrays are pickled the way numpy pickles them (ndarray.__reduce__):
// numpy.core.multiarray._reconstruct(ndarray, (0,), b'b') then BUILD with
// (1, shape, dtype, is_fortran, raw bytes); dtypes as numpy.dtype(code, False, True) + BUILD
// (3, '<', None, None, None, -1, -1, 0). Protocol 3 (bytes objects), little-endian data.
import { DType, Tensor, tidy } from '../torch';
import { Detectron2Checkpoint } from './export';

const NUMPY_CODE: Partial<Record<DType, string>> = { float32: 'f4', float64: 'f8', float16: 'f2', int64: 'i8', int32: 'i4', uint8: 'u1', bool: 'b1' };

class PickleWriter {
  private chunks: Buffer[] = [];
  private memo = new Map<string, number>();

  op(...bytes: number[]): void { this.chunks.push(Buffer.from(bytes)); }
  raw(b: Buffer): void { this.chunks.push(b); }

  u32(n: number): Buffer { const b = Buffer.alloc(4); b.writeUInt32LE(n); return b; }

  str(s: string): void {
    const b = Buffer.from(s, 'utf8');
    this.op(0x58); // BINUNICODE
    this.raw(this.u32(b.length));
    this.raw(b);
  }

  int(n: number): void {
    if (Number.isInteger(n) && n >= 0 && n < 256) this.op(0x4b, n); // BININT1
    else {
      if (!Number.isInteger(n) || n < -(2 ** 31) || n >= 2 ** 31) throw new RangeError(`pickle: ${n} is not a 32-bit int`);
      const b = Buffer.alloc(4);
      b.writeInt32LE(n);
      this.op(0x4a); // BININT
      this.raw(b);
    }
  }

  bytes(b: Buffer): void {
    if (b.length < 256) this.op(0x43, b.length); // SHORT_BINBYTES
    else { this.op(0x42); this.raw(this.u32(b.length)); } // BINBYTES
    this.raw(b);
  }

  /** Emits `build()` once and memoises the object under `key`; later uses fetch it from the memo. */
  memoised(key: string, build: () => void): void {
    const id = this.memo.get(key);
    if (id !== undefined) { this.op(0x6a); this.raw(this.u32(id)); return; } // LONG_BINGET
    build();
    const n = this.memo.size;
    this.memo.set(key, n);
    this.op(0x72); this.raw(this.u32(n)); // LONG_BINPUT
  }

  global(module: string, name: string): void {
    this.memoised(`global:${module}.${name}`, () => this.raw(Buffer.from(`c${module}\n${name}\n`, 'latin1')));
  }

  dtype(code: string): void {
    this.memoised(`dtype:${code}`, () => {
      this.global('numpy', 'dtype');
      this.str(code);
      this.op(0x89, 0x88, 0x87, 0x52); // False, True, TUPLE3, REDUCE
      this.op(0x28); // MARK
      this.int(3); this.str('<'); this.op(0x4e, 0x4e, 0x4e); this.int(-1); this.int(-1); this.int(0);
      this.op(0x74, 0x62); // TUPLE, BUILD
    });
  }

  ndarray(t: Tensor, name: string): void {
    const code = NUMPY_CODE[t.dtype];
    if (!code) throw new TypeError(`detectron2Pickle: ${name} has dtype ${t.dtype}, which has no numpy equivalent here`);
    const data = tidy(() => {
      const a = t.to('cpu').contiguous().toTypedArray();
      return Buffer.from(a.buffer, a.byteOffset, a.byteLength);
    });
    this.global('numpy.core.multiarray', '_reconstruct');
    this.global('numpy', 'ndarray');
    this.int(0); this.op(0x85); // (0,)
    this.bytes(Buffer.from('b'));
    this.op(0x87, 0x52); // TUPLE3, REDUCE
    this.op(0x28); // MARK: the state tuple
    this.int(1);
    const shape = t.shape;
    if (shape.length === 0) this.op(0x29); // EMPTY_TUPLE
    else { this.op(0x28); for (const d of shape) this.int(d); this.op(0x74); }
    this.dtype(code);
    this.op(0x89); // not Fortran-ordered
    this.bytes(data);
    this.op(0x74, 0x62); // TUPLE, BUILD
  }

  finish(): Buffer { this.op(0x2e); return Buffer.concat(this.chunks); } // STOP
}

/** The bytes of a Detectron2 .pkl checkpoint (pickle.load(f, encoding='latin1') reads it). */
export function detectron2Pickle(ckpt: Detectron2Checkpoint): Buffer {
  const p = new PickleWriter();
  p.op(0x80, 3); // PROTO 3
  p.op(0x7d, 0x28); // EMPTY_DICT, MARK
  p.str('model');
  p.op(0x7d, 0x28); // EMPTY_DICT, MARK
  for (const [k, v] of Object.entries(ckpt.model)) { p.str(k); p.ndarray(v, k); }
  p.op(0x75); // SETITEMS
  p.str('__author__'); p.str(ckpt.__author__);
  p.str('matching_heuristics'); p.op(ckpt.matching_heuristics ? 0x88 : 0x89);
  p.op(0x75);
  return p.finish();
}
