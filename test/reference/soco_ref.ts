// Bridge to test/reference/soco_ref.py (Debian's /usr/bin/python3 with torch + torchvision):
// tensors travel as bundles, a directory with manifest.json and one raw little-endian file per
// tensor, so full-size weights and activations move without JSON number formatting.
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { Tensor, tensor, tidy } from '../../lib/torch';
import { PYTHON } from './python';

export { PYTHON };
export const SOCO_REF = path.resolve(__dirname, '..', '..', '..', 'test', 'reference', 'soco_ref.py');

export function writeBundle(dir: string, tensors: Record<string, Tensor>): void {
  fs.mkdirSync(dir, { recursive: true });
  const man: Record<string, { dtype: string; shape: number[]; file: string }> = {};
  Object.entries(tensors).forEach(([name, t], i) => {
    if (t.dtype !== 'float32' && t.dtype !== 'int64') throw new TypeError(`writeBundle: ${name} is ${t.dtype}; only float32 and int64 travel`);
    const a = t.device === 'cpu' ? t.toTypedArray() : tidy(() => t.to('cpu').toTypedArray());
    const file = `${i}.bin`;
    fs.writeFileSync(path.join(dir, file), Buffer.from(a.buffer, a.byteOffset, a.byteLength));
    man[name] = { dtype: t.dtype, shape: t.shape, file };
  });
  fs.writeFileSync(path.join(dir, 'manifest.json'), JSON.stringify(man));
}

/** The tensors of a bundle (CPU); the caller owns them. */
export function readBundle(dir: string): Record<string, Tensor> {
  const man = JSON.parse(fs.readFileSync(path.join(dir, 'manifest.json'), 'utf8')) as Record<string, { dtype: string; shape: number[]; file: string }>;
  const out: Record<string, Tensor> = {};
  for (const [name, m] of Object.entries(man)) {
    const buf = fs.readFileSync(path.join(dir, m.file));
    const ab = buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength);
    const data = m.dtype === 'int64' ? new BigInt64Array(ab) : new Float32Array(ab);
    out[name] = tensor(data, { shape: m.shape });
  }
  return out;
}

export function python(args: string[], timeoutMs = 600_000): string {
  return execFileSync(PYTHON, [SOCO_REF, ...args], { encoding: 'utf8', maxBuffer: 1 << 26, timeout: timeoutMs });
}

/**
 * torch.allclose's rule, element by element: |a - b| <= atol + rtol * |b|. Returns the worst
 * element's |a - b| / (atol + rtol * |b|) (<= 1: every element is close) with its values.
 */
export function closeness(a: Tensor, b: Tensor, rtol: number, atol: number): { worst: number; ours: number; theirs: number } {
  if (a.shape.join() !== b.shape.join()) throw new Error(`closeness: shapes [${a.shape}] vs [${b.shape}]`);
  if (a.numel === 0) return { worst: 0, ours: NaN, theirs: NaN };
  return tidy(() => {
    const af = a.to(null, 'float64').flatten();
    const bf = b.to(null, 'float64').flatten();
    const ratio = af.sub(bf).abs().div(bf.abs().mul(rtol).add(atol));
    const i = ratio.argmax().item();
    return { worst: ratio.max().item(), ours: af.select(0, i).item(), theirs: bf.select(0, i).item() };
  });
}
