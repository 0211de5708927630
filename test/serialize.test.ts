// save()/load() against the lane's PyTorch (PYTHON: Debian's 1.13 or torch 2.x; test/reference/serialize_ref.py):
// Python reads every file we write (and torch.save of what it read must write our file: byte for
// byte on 1.13, record for record on 2.x),
// we read files Python wrote (a torchvision resnet18 state dict, every dtype, views sharing a
// storage, deflated and big-endian archives). Values are compared as descriptions both sides
// compute the same way: tensors by dtype, shape and SHA-256 of their bytes, floats by their bits.
import { strict as assert } from 'assert';
import { execFileSync } from 'child_process';
import { createHash } from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { DType, Tensor, TypedArray, liveTensors, load, rand, save, tensor } from '../lib/torch';
import { Saveable, SerializationError, pythonAttributes } from '../lib/torch/serialize';
import { PYTHON } from './reference/python';

const REF = path.resolve(__dirname, '..', '..', 'test', 'reference', 'serialize_ref.py');
const ROOT = path.resolve(__dirname, '..', '..');
const DTYPES: DType[] = ['float32', 'float64', 'float16', 'bfloat16', 'int64', 'int32', 'uint8', 'bool'];

type Desc = null | { [k: string]: unknown };
interface Layout { name: string; dataOffset: number; size: number; method: number; flags: number; localExtraIds: number[]; centralExtraIds: number[] }
interface PyRead { value: Desc; layout: { records: Layout[]; crcError: string | null }; differenceFromTorchSave: string | null }

function python(args: string[]): unknown {
  return JSON.parse(execFileSync(PYTHON, [REF, ...args], { encoding: 'utf8', maxBuffer: 1 << 28 }));
}

const bits = (x: number): string => { const b = Buffer.alloc(8); b.writeDoubleLE(x); return b.toString('hex'); };
const sha = (a: TypedArray): string => createHash('sha256').update(Buffer.from(a.buffer, a.byteOffset, a.byteLength)).digest('hex');
const tensorDesc = (t: Tensor, requiresGrad = t.requiresGrad): Desc =>
  ({ tensor: t.dtype, shape: t.shape, sha256: sha(t.toTypedArray()), requiresGrad });

/** What Python should find in a file save() wrote: JS integers are ints, other numbers floats. */
function savedDesc(v: unknown): Desc {
  if (v === null) return null;
  if (v instanceof Tensor) return tensorDesc(v, false);
  if (typeof v === 'boolean') return { bool: v };
  if (typeof v === 'bigint') return { int: v.toString() };
  if (typeof v === 'number') return Number.isInteger(v) && !Object.is(v, -0) ? { int: BigInt(v).toString() } : { float: bits(v) };
  if (typeof v === 'string') return { str: v };
  if (Array.isArray(v)) return { list: v.map(savedDesc) };
  if (v instanceof Map) return { dict: [...v].map(([k, x]) => [savedDesc(k), savedDesc(x)]) };
  return { dict: Object.entries(v as object).map(([k, x]) => [{ str: k }, savedDesc(x)]) };
}

/** What load() returned, in JS terms (a number is a number, whether Python had int or float). */
function loadedDesc(v: unknown): Desc {
  if (v === null) return null;
  if (v instanceof Tensor) return tensorDesc(v);
  if (typeof v === 'boolean') return { bool: v };
  if (typeof v === 'bigint') return { int: v.toString() };
  if (typeof v === 'number') return { num: bits(v) };
  if (typeof v === 'string') return { str: v };
  if (Array.isArray(v)) return { list: v.map(loadedDesc) };
  const d: { dict: unknown[]; attrs?: unknown } = v instanceof Map
    ? { dict: [...v].map(([k, x]) => [loadedDesc(k), loadedDesc(x)]) }
    : { dict: Object.entries(v as object).map(([k, x]) => [{ str: k }, loadedDesc(x)]) };
  const attrs = (v as { [pythonAttributes]?: Record<string, unknown> })[pythonAttributes];
  if (attrs) d.attrs = Object.fromEntries(Object.entries(attrs).map(([k, x]) => [k, loadedDesc(x)]));
  return d;
}

/** A Python description as load() should render it: ints within 2^53 and floats are numbers, tuples lists. */
function asJs(d: unknown): unknown {
  if (d === null || typeof d !== 'object') return d;
  if (Array.isArray(d)) return d.map(asJs);
  const o = d as Record<string, unknown>;
  if ('int' in o) {
    const b = BigInt(o.int as string);
    return b >= BigInt(Number.MIN_SAFE_INTEGER) && b <= BigInt(Number.MAX_SAFE_INTEGER) ? { num: bits(Number(b)) } : o;
  }
  if ('float' in o) return { num: o.float };
  if ('tuple' in o) return { list: asJs(o.tuple) };
  if ('tensor' in o) return o;
  return Object.fromEntries(Object.entries(o).map(([k, x]) => [k, asJs(x)]));
}

/** Deterministic bytes (xorshift32), so failures reproduce. */
function randomBytes(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) { s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0; out[i] = s & 0xff; }
  return out;
}

function randomTensor(dtype: DType, shape: number[], seed: number): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const size = { float32: 4, float64: 8, float16: 2, bfloat16: 2, int64: 8, int32: 4, uint8: 1, bool: 1 }[dtype];
  const raw = randomBytes(n * size, seed);
  if (dtype === 'bool') for (let i = 0; i < n; i++) raw[i] &= 1;
  const ab = raw.buffer;
  const typed: TypedArray = dtype === 'float32' ? new Float32Array(ab) : dtype === 'float64' ? new Float64Array(ab)
    : dtype === 'float16' || dtype === 'bfloat16' ? new Uint16Array(ab) : dtype === 'int64' ? new BigInt64Array(ab)
      : dtype === 'int32' ? new Int32Array(ab) : raw;
  return tensor(typed, { dtype, shape });
}

function expectError(fn: () => unknown, file: string, what: RegExp): void {
  assert.throws(fn, (e: Error) => {
    assert.ok(e instanceof SerializationError, `${e.name}: ${e.message}`);
    assert.ok(e.message.includes(file), `message does not name ${file}: ${e.message}`);
    assert.match(e.message, what);
    return true;
  });
}

describe('serialize: save/load in PyTorch format', function () {
  this.timeout(120000);
  let dir: string;
  let fx: string;
  let expected: Record<string, Desc>;

  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'soco-serialize-'));
    fx = path.join(dir, 'python');
    fs.mkdirSync(fx);
    expected = python(['fixtures', fx]) as Record<string, Desc>;
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  describe('files we write, read by Python', () => {
    let exact: Record<string, unknown>;
    let floats: Record<string, unknown>;
    let big: Record<string, Tensor>;
    let files: Record<string, string>;
    let py: Record<string, PyRead>;

    before(() => {
      // Every dtype in every kind of shape, non-contiguous inputs, a tensor referenced twice,
      // and the containers and scalars Python's 1.13 weights_only unpickler reads.
      const tensors: Record<string, Tensor> = {};
      let seed = 1;
      for (const d of DTYPES) {
        for (const shape of [[], [0], [7], [2, 3, 4], [0, 3], [1, 1, 1, 1, 5]]) tensors[`${d}[${shape}]`] = randomTensor(d, shape, seed++);
        tensors[`${d} transposed`] = randomTensor(d, [4, 6], seed++).transpose(0, 1);
        tensors[`${d} narrowed`] = randomTensor(d, [5, 6], seed++).narrow(1, 2, 3);
      }
      const shared = randomTensor('float32', [3], 99);
      const manyKeys: Record<string, number> = {};
      for (let i = 0; i < 1000; i++) manyKeys[`k${i}`] = i * 977;   // a full pickle batch, then an empty one
      exact = {
        tensors, shared, again: shared, nested: { deeper: [shared, { x: [1, [2, [3]]] }] },
        ints: [0, 1, 255, 256, 65535, 65536, -1, -129, 2 ** 31 - 1, -(2 ** 31), 2 ** 31, 2 ** 53 - 1, -(2 ** 53 - 1), 2 ** 60, -1e20],
        bigints: [2n ** 64n, -(2n ** 64n), -(2n ** 63n), 2n ** 63n - 1n, 5n, 10n ** 300n],
        strings: ['', 'a', 'a', '\u00e9', 'caf\u00e9 \u2713 \ud83d\ude00', 'x'.repeat(300)],
        flags: [true, false, null],
        list1: [7], list1001: Array.from({ length: 1001 }, (_, i) => i), manyKeys,
        intKeys: new Map<number, Saveable>([[0, 'zero'], [-3, 'minus three'], [1 << 20, 'big']]),
        '': 'empty key',
      };
      floats = {
        lr: 0.1, momentum: 0.9, half: 0.5, negZero: -0, nan: NaN, inf: Infinity, ninf: -Infinity, tiny: 5e-324,
        step: 2 ** 40, int: 3, t: randomTensor('float32', [2, 2], 7),
      };
      // 80 MB in one tensor, non-contiguous: written and read in 64 MB pieces.
      big = { big: rand([5000, 4000]).transpose(0, 1) };
      files = {
        exact: path.join(dir, 'exact.pt'),
        floats: path.join(dir, 'floats.pt'),
        zip64: path.join(dir, 'zip64.pt'),
        big: path.join(dir, 'big.pt'),
      };
      save(files.exact, exact as Saveable);
      save(files.floats, floats as Saveable);
      save(files.zip64, exact as Saveable, { zip64: 'always' });
      save(files.big, big);
      py = {
        ...(python(['read', '--weights-only', files.exact, files.zip64, files.big]) as Record<string, PyRead>),
        ...(python(['read', files.floats]) as Record<string, PyRead>),
      };
    });

    it('torch.load(weights_only=True) returns the keys and values we saved', () => {
      assert.deepEqual(py[files.exact].value, savedDesc(exact));
      assert.deepEqual(py[files.zip64].value, savedDesc(exact));
    });

    it('floats are Python floats (bits exact, -0 and NaN included)', () => {
      // PyTorch 1.13's weights_only unpickler lacks BINFLOAT (2.x has it), so this one is read
      // with torch.load's full unpickler; Python's own torch.save writes floats the same way.
      assert.deepEqual(py[files.floats].value, savedDesc(floats));
    });

    // Byte for byte on 1.13; 2.x adds three records its reader treats as optional, one of them a
    // random id, and orders storages numerically, so there every other record must match
    // (test/reference/serialize_ref.py, difference_from_torch_save).
    it('is what torch.save writes for the same object', () => {
      for (const f of [files.exact, files.floats, files.big])
        assert.equal(py[f].differenceFromTorchSave, null, `${path.basename(f)}: ${py[f].differenceFromTorchSave}`);
    });

    it('lays records out as PyTorch does: stored, 64-byte aligned, data.pkl first, storages in key order', () => {
      const recs = py[files.exact].layout.records;
      assert.equal(py[files.exact].layout.crcError, null);
      const keys = recs.filter((r) => r.name.startsWith('archive/data/')).map((r) => r.name.slice('archive/data/'.length));
      assert.deepEqual(keys, [...keys].sort());
      assert.deepEqual(recs.map((r) => r.name), ['archive/data.pkl', 'archive/byteorder', ...keys.map((k) => `archive/data/${k}`), 'archive/version']);
      for (const r of recs) {
        assert.equal(r.dataOffset % 64, 0, `${r.name} data at ${r.dataOffset}`);
        assert.equal(r.method, 0);
        assert.deepEqual(r.localExtraIds, [0x4246]);  // "FB" padding only
        assert.equal(r.flags, r.size > 0 ? 0x0808 : 0x0800);
      }
    });

    it('zip64 records (forced on every record) are read by Python and by us', () => {
      assert.equal(py[files.zip64].layout.crcError, null);
      for (const r of py[files.zip64].layout.records) {
        assert.equal(r.dataOffset % 64, 0);
        assert.deepEqual(r.localExtraIds, [0x0001, 0x4246]);
        assert.deepEqual(r.centralExtraIds, [0x0001]);
      }
      const back = load(files.zip64);
      assert.deepEqual(loadedDesc(back), asJs(savedDesc(exact)));
    });

    it('load() gives back every dtype and shape exactly (and the int keys as a Map)', () => {
      const back = load<Record<string, unknown>>(files.exact);
      assert.deepEqual(loadedDesc(back), asJs(savedDesc(exact)));
      const t = (back.tensors as Record<string, Tensor>)['bfloat16[2,3,4]'];
      assert.deepEqual([t.dtype, t.shape], ['bfloat16', [2, 3, 4]]);
      assert.ok(back.intKeys instanceof Map && back.intKeys.get(-3) === 'minus three');
      assert.equal(back.again, back.shared, 'one tensor saved twice comes back as one tensor');
      assert.deepEqual(loadedDesc(load(files.floats)), asJs(savedDesc(floats)));
    });

    it('a tensor bigger than one 64 MB piece: Python reads it, and so do we', () => {
      assert.deepEqual(py[files.big].value, savedDesc(big));
      assert.equal(py[files.big].differenceFromTorchSave, null);
      assert.deepEqual(loadedDesc(load(files.big)), asJs(savedDesc(big)));
    });
  });

  describe('files Python wrote, read by us', () => {
    it("a torchvision resnet18 state dict: same keys in order, same values, _metadata kept aside", () => {
      const sd = load<Record<string, Tensor>>(path.join(fx, 'resnet18.pt'));
      assert.deepEqual(loadedDesc(sd), asJs(expected['resnet18.pt']));
      assert.equal(Object.keys(sd).length, 122);
      assert.equal(sd['layer1.0.bn1.num_batches_tracked'].dtype, 'int64');
    });

    it('every dtype, 0-dim, views over one storage, expand, Parameter, Size, big ints, tuples, int keys', () => {
      const m = load<Record<string, unknown>>(path.join(fx, 'mixed.pt'));
      assert.deepEqual(loadedDesc(m), asJs(expected['mixed.pt']));
      assert.equal((m.param as Tensor).requiresGrad, true);
      assert.deepEqual((m.size as number[]), [2, 3]);
      assert.ok(m.int_keys instanceof Map);
    });

    it('views of one storage still share it, as in Python', () => {
      const m = load<{ views: Record<string, Tensor> }>(path.join(fx, 'mixed.pt'));
      m.views.row.add_(1);
      assert.deepEqual(loadedDesc(m.views), asJs(expected['mixed.pt:after_row_add']));
    });

    it('pickle protocol 4, deflated records and big-endian archives', () => {
      assert.deepEqual(loadedDesc(load(path.join(fx, 'proto4.pt'))), asJs(expected['proto4.pt']));
      assert.deepEqual(loadedDesc(load(path.join(fx, 'deflated.pt'))), asJs(expected['deflated.pt']));
      assert.deepEqual(loadedDesc(load(path.join(fx, 'bigendian.pt'))), asJs(expected['bigendian.pt']));
    });
  });

  describe('atomic writes', () => {
    const child = (file: string, limitKb: number): { message?: string } => {
      // RLIMIT_FSIZE makes the write fail mid-file with EFBIG (Node ignores SIGXFSZ): a real I/O
      // error after part of the temp file is written, like a full disk.
      const script = `const t = require(${JSON.stringify(path.join(ROOT, 'dist', 'lib', 'torch'))});
        try { t.save(${JSON.stringify(file)}, { w: t.zeros([256, 1024]) }); console.log('{}'); }
        catch (e) { console.log(JSON.stringify({ message: e.message })); }`;
      return JSON.parse(execFileSync('bash', ['-c', `ulimit -f ${limitKb}; exec "$0" -e "$1"`, process.execPath, script], { encoding: 'utf8' }));
    };

    it('a write that fails midway leaves the previous file intact, no temp file, and names the path', () => {
      const folder = fs.mkdtempSync(path.join(dir, 'atomic-'));
      const file = path.join(folder, 'ckpt.pt');
      save(file, { w: randomTensor('float32', [16], 3) });
      fs.chmodSync(file, 0o640);
      const before = fs.readFileSync(file);
      const r = child(file, 64);
      assert.ok(r.message, 'the limited write should fail');
      assert.ok(r.message.includes(file) && /EFBIG|too large/i.test(r.message), r.message);
      assert.deepEqual(fs.readFileSync(file), before);
      assert.deepEqual(fs.readdirSync(folder), ['ckpt.pt']);
      // and with room, the same write replaces it (keeping its mode) and leaves nothing else behind
      assert.deepEqual(child(file, 1 << 20), {});
      assert.deepEqual(fs.readdirSync(folder), ['ckpt.pt']);
      assert.equal(fs.statSync(file).mode & 0o777, 0o640);
      assert.deepEqual((load<{ w: Tensor }>(file).w).shape, [256, 1024]);
    });

    it('unwritable targets and unsaveable values throw naming the path; the old file stays', () => {
      const file = path.join(dir, 'keep.pt');
      save(file, { a: 1 });
      const before = fs.readFileSync(file);
      expectError(() => save(path.join(dir, 'no', 'such', 'dir', 'x.pt'), { a: 1 }), path.join(dir, 'no', 'such'), /ENOENT/);
      expectError(() => save(path.join(file, 'x.pt'), { a: 1 }), file, /ENOTDIR/);
      expectError(() => save(file, { a: { b: [1, () => 0] } } as unknown as Saveable), file, /function at obj\["a"\]\["b"\]\[1\]/);
      expectError(() => save(file, { d: new Date() } as unknown as Saveable), file, /Date/);
      expectError(() => save(file, { u: undefined } as unknown as Saveable), file, /undefined/);
      const gone = randomTensor('float32', [2], 1);
      gone.dispose();
      expectError(() => save(file, { gone }), file, /disposed/);
      assert.deepEqual(fs.readFileSync(file), before);
    });
  });

  describe('bad files', () => {
    it('corrupt, truncated and non-torch files: an error naming the file and the problem, no tensors leaked', () => {
      const live = liveTensors();
      const good = path.join(fx, 'mixed.pt');
      const bytes = fs.readFileSync(good);
      const variant = (name: string, b: Uint8Array): string => { const f = path.join(dir, name); fs.writeFileSync(f, b); return f; };
      const flip = (at: number): Buffer => { const b = Buffer.from(bytes); b[at] ^= 0x5a; return b; };
      // A tensor record and data.pkl, located by their names in the archive.
      const dataAt = (name: string): number => bytes.indexOf(Buffer.from(name)) + name.length + bytes.readUInt16LE(bytes.indexOf(Buffer.from(name)) - 2);
      const cases: [string, RegExp][] = [
        [variant('half.pt', bytes.subarray(0, bytes.length >> 1)), /truncated or not a zip/],
        [variant('short-tail.pt', bytes.subarray(0, bytes.length - 10)), /truncated or not a zip/],
        [variant('no-head.pt', bytes.subarray(0, 10)), /truncated or not a zip/],
        [variant('bad-tensor.pt', flip(dataAt('mixed/data/3') + 5)), /CRC-32 mismatch in mixed\/data\/3/],
        [variant('bad-pickle.pt', flip(dataAt('mixed/data.pkl') + 40)), /CRC-32 mismatch in mixed\/data.pkl/],
        [variant('empty.pt', new Uint8Array(0)), /is empty/],
        [variant('text.pt', Buffer.from('hello, not a checkpoint\n')), /not a PyTorch checkpoint/],
        [path.join(fx, 'legacy.pt'), /legacy format: re-save with torch\.save\(\.\.\., _use_new_zipfile_serialization=True\)/],
        [path.join(fx, 'global.pt'), /Python global 'posix\.getcwd'.*nothing in the file is executed/],
        [path.join(fx, 'int16.pt'), /dtype int16/],
        [path.join(fx, 'jit.pt'), /TorchScript/],
        [path.join(fx, 'plain.zip'), /without notes\/data\.pkl/],
        [path.join(fx, 'plain.pkl'), /plain pickle/],
        [path.join(fx, 'missing_record.pt'), /data\/1 is missing/],
        [path.join(dir, 'does-not-exist.pt'), /ENOENT/],
        [fx, /directory/],
      ];
      for (const [file, what] of cases) expectError(() => load(file), file, what);
      assert.equal(liveTensors(), live);
      expectError(() => load(good, { device: 'gpu' }), good, /device must be/);
    });
  });
});
