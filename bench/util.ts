// Shared by the benchmarks: the one output format, the reference processes, medians.
import { ChildProcessByStdio, execFileSync, spawn } from 'child_process';
import * as readline from 'readline';
import { Readable, Writable } from 'stream';
import { SYSTEM_PYTHON } from '../test/reference/python';

/** Prints `bench: NAME ours=V UNIT ref=V UNIT ratio=X`; ratio > 1 means soco-train is better. */
export function report(name: string, ours: number, ref: number, unit: string, higherIsBetter: boolean): void {
  const ratio = higherIsBetter ? ours / ref : ref / ours;
  const fmt = (v: number): string => (Math.abs(v) >= 100 ? v.toFixed(1) : v.toPrecision(4));
  console.log(`bench: ${name} ours=${fmt(ours)} ${unit} ref=${fmt(ref)} ${unit} ratio=${ratio.toFixed(3)}`);
}

export function median(v: readonly number[]): number {
  const s = [...v].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/**
 * Runs an image-side reference script (PIL, scikit-image, OpenCV) to completion with Debian's
 * Python; the torch references run under PYTHON (test/reference/python.ts) through PythonServer.
 */
export function python(script: string, args: string[] = []): string {
  return execFileSync(SYSTEM_PYTHON, [script, ...args], { encoding: 'utf8', maxBuffer: 1 << 28 });
}

/**
 * A reference script kept alive for a whole benchmark, so that its timed rounds alternate with
 * ours (a change in the load of a shared machine hits both sides alike): a command per line in,
 * a line out per answer.
 */
export class PythonServer {
  private readonly proc: ChildProcessByStdio<Writable, Readable, null>;
  private readonly lines: AsyncIterableIterator<string>;
  constructor(private readonly script: string, args: string[], interpreter: string) {
    this.proc = spawn(interpreter, [script, ...args], { stdio: ['pipe', 'pipe', 'inherit'] });
    this.lines = readline.createInterface({ input: this.proc.stdout })[Symbol.asyncIterator]();
  }
  /** The next line the script prints. */
  async line(): Promise<string> {
    const { value, done } = await this.lines.next();
    if (done) throw new Error(`${this.script} exited early`);
    return value;
  }
  async ask(cmd: string): Promise<string> {
    this.proc.stdin.write(`${cmd}\n`);
    return this.line();
  }
  close(): void { this.proc.stdin.end(); }
}
