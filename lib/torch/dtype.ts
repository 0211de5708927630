/** Element types, with LibTorch's ScalarType codes. */
export type DType = 'float32' | 'float16' | 'bfloat16' | 'float64' | 'int64' | 'int32' | 'uint8' | 'bool';

export const dtypeCode: Record<DType, number> = {
  uint8: 0, int32: 3, int64: 4, float16: 5, float32: 6, float64: 7, bool: 11, bfloat16: 15,
};

const byCode = new Map<number, DType>(Object.entries(dtypeCode).map(([k, v]) => [v, k as DType]));

export function dtypeFromCode(code: number): DType {
  const d = byCode.get(code);
  if (!d) throw new TypeError(`unsupported ScalarType code ${code}`);
  return d;
}

export function isFloating(d: DType): boolean {
  return d === 'float32' || d === 'float16' || d === 'bfloat16' || d === 'float64';
}

/** The TypedArray that carries each dtype's bytes (half types as raw 16-bit patterns). */
export type TypedArray = Float32Array | Float64Array | Uint16Array | BigInt64Array | Int32Array | Uint8Array;

export function arrayFor(d: DType, n: number): TypedArray {
  switch (d) {
    case 'float32': return new Float32Array(n);
    case 'float64': return new Float64Array(n);
    case 'float16': case 'bfloat16': return new Uint16Array(n);
    case 'int64': return new BigInt64Array(n);
    case 'int32': return new Int32Array(n);
    case 'uint8': case 'bool': return new Uint8Array(n);
  }
}

export function dtypeOfArray(a: ArrayBufferView): DType {
  if (a instanceof Float32Array) return 'float32';
  if (a instanceof Float64Array) return 'float64';
  if (a instanceof BigInt64Array) return 'int64';
  if (a instanceof Int32Array) return 'int32';
  if (a instanceof Uint8Array) return 'uint8';
  if (a instanceof Uint16Array) throw new TypeError('a Uint16Array is ambiguous (float16 or bfloat16 bits): pass dtype');
  throw new TypeError(`a ${a.constructor.name} carries no tensor dtype: use Float32Array, Float64Array, BigInt64Array, Int32Array, Uint8Array (uint8/bool) or Uint16Array (float16/bfloat16 bits)`);
}

/** Devices are strings as in PyTorch: 'cpu', 'cuda', 'cuda:1'. */
export type Device = string;

export function checkDevice(d: Device): Device {
  if (!/^(cpu|cuda(:\d+)?)$/.test(d)) throw new TypeError(`device must be 'cpu', 'cuda' or 'cuda:N', got '${d}'`);
  return d;
}

/** What a --device flag accepts: a device, or 'auto' (CUDA when available). Resolved by pickDevice. */
export function isDeviceChoice(s: string): boolean { return s === 'auto' || /^(cpu|cuda(:\d+)?)$/.test(s); }
export const DEVICE_CHOICES = 'auto, cpu, cuda or cuda:N';
