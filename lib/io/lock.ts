// One writer per output: `proposals generate`, `proposals import` and `train` hold an exclusive
// lock file on what they write. flock(2) (native/io.cc) does the excluding, so a holder that dies,
// kill -9 included, never blocks the next run; the file names its holder (pid, host, command,
// start) for the refusal message and for the note when a dead holder's lock is taken over.
import * as fs from 'fs';
import * as os from 'os';
import { native } from '../torch/native';
import { processAlive } from './temp_files';

export interface LockOwner { pid: number; host: string; command: string; since: string }

/** Another live process holds the lock; the message names it. */
export class LockHeldError extends Error {
  override name = 'LockHeldError';
  constructor(message: string, readonly owner: LockOwner | null) { super(message); }
}

const held = new Set<OutputLock>();
let exitHook = false;

export class OutputLock {
  private fd: number | null;
  constructor(readonly file: string, fd: number, readonly owner: LockOwner) { this.fd = fd; }

  /** Removes the lock file and lets the next writer in. Idempotent. */
  release(): void {
    if (this.fd === null) return;
    // unlinked while still held: a writer that opened this file meanwhile sees it replaced and retries
    if (sameFile(this.fd, this.file)) fs.rmSync(this.file, { force: true });
    fs.closeSync(this.fd);
    this.fd = null;
    held.delete(this);
  }
}

export function describeOwner(o: LockOwner): string {
  return `pid ${o.pid} on ${o.host} (${o.command}, since ${o.since})`;
}

/** Whether a lock owner may still run: a process of this host that exists, or one of another host. */
const live = (o: LockOwner): boolean => o.host !== os.hostname() || processAlive(o.pid);

function sameFile(fd: number, file: string): boolean {
  try {
    const a = fs.fstatSync(fd), b = fs.statSync(file);
    return a.ino === b.ino && a.dev === b.dev;
  } catch {
    return false;
  }
}

function readOwner(fd: number): LockOwner | null {
  const b = Buffer.alloc(4096);
  const n = fs.readSync(fd, b, 0, b.length, 0);
  try {
    const o = JSON.parse(b.toString('utf8', 0, n)) as LockOwner;
    return Number.isInteger(o.pid) && typeof o.host === 'string' ? o : null;
  } catch {
    return null;
  }
}

/**
 * Takes the exclusive lock `file` for `command` (e.g. 'proposals generate') on `what` (the output,
 * as the message names it), or throws LockHeldError naming the live holder, at once. A lock left
 * by a dead holder is taken over with a note to `log`. Released by release() or at process exit.
 */
export function acquireLock(file: string, o: { what: string; command: string; log?: (m: string) => void }): OutputLock {
  for (;;) {
    const fd = fs.openSync(file, fs.constants.O_RDWR | fs.constants.O_CREAT, 0o644);
    let ok = false;
    try {
      if (!native.tryLockFile(fd)) {
        // a holder that has just taken the lock writes its name a moment later (until then the
        // file is empty or still names the dead holder it took over from)
        let owner = readOwner(fd);
        for (let i = 0; i < 50 && !(owner && live(owner)); i++) {
          Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20);
          owner = readOwner(fd);
        }
        const self = owner !== null && owner.pid === process.pid && owner.host === os.hostname();
        throw new LockHeldError(`${o.what} is being written by ${owner && live(owner) ? describeOwner(owner) : 'another process'}: ` +
          `one writer at a time; ${self ? 'this process: close the other writer first' : 'wait for it to finish or stop it'} (lock file ${file})`, owner);
      }
      // the previous holder released (and removed) the file after we opened it: lock the new one
      if (!sameFile(fd, file)) continue;
      const previous = readOwner(fd);
      if (previous) o.log?.(`note: ${o.what}: took over the lock of ${describeOwner(previous)}, which is gone (killed or crashed) (lock file ${file})`);
      const owner: LockOwner = { pid: process.pid, host: os.hostname(), command: o.command, since: new Date().toISOString() };
      const text = Buffer.from(JSON.stringify(owner) + '\n');
      fs.ftruncateSync(fd, 0);
      fs.writeSync(fd, text, 0, text.length, 0);
      const lock = new OutputLock(file, fd, owner);
      held.add(lock);
      if (!exitHook) {
        exitHook = true;
        process.on('exit', () => { for (const l of [...held]) l.release(); });
      }
      ok = true;
      return lock;
    } finally {
      if (!ok) fs.closeSync(fd);
    }
  }
}

/** The live holder of lock `file`, if any (for messages of readers; takes nothing). */
export function lockOwner(file: string): LockOwner | null {
  let fd: number;
  try { fd = fs.openSync(file, 'r'); } catch { return null; }
  try {
    const o = readOwner(fd);
    return o && live(o) ? o : null;
  } finally {
    fs.closeSync(fd);
  }
}
