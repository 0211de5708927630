// Temporary files, one scheme for every writer (checkpoints, exports, proposal stores, their
// indexes): FILE is staged as .FILE.tmp-HOST-PID-RANDOM in its folder and renamed over FILE when
// complete, so a reader sees the old file or the new one, never half of one. A writer killed with -9
// leaves its staging file (a checkpoint's is tens of MB, a store's GBs); host and pid in the name let
// the next writer remove exactly those whose process is gone. Files named after a staging file (a
// staged store's index) carry its mark and go with it. Other hosts' files on a shared file system
// stay: their pids cannot be checked from here.
import { randomBytes } from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

const HOST = os.hostname();
/** The mark of a staging file of this host; group 1 is the writer's pid. */
const MARK = new RegExp(`\\.tmp-${HOST.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}-(\\d+)-[0-9a-f]{8}(?=\\.|$)`);

/** The temporary sibling that a write of `file` by this process goes through. */
export function tempPathFor(file: string): string {
  return path.join(path.dirname(file), `.${path.basename(file)}.tmp-${HOST}-${process.pid}-${randomBytes(4).toString('hex')}`);
}

/** Writes `data` to `file` atomically (temporary sibling, fsync, rename). */
export function writeFileAtomic(file: string, data: string | Uint8Array): void {
  const tmp = tempPathFor(file);
  try {
    const fd = fs.openSync(tmp, 'wx', 0o666);
    try {
      fs.writeFileSync(fd, data);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(tmp, file);
  } catch (e) {
    fs.rmSync(tmp, { force: true });
    throw e;
  }
  syncDir(path.dirname(file));
}

/** Makes renames in `dir` durable. Some file systems cannot fsync a folder; the files are complete
 * and in place either way, so that is not an error. */
export function syncDir(dir: string): void {
  let fd = -1;
  try {
    fd = fs.openSync(dir, 'r');
    fs.fsyncSync(fd);
  } catch {
    /* see above */
  } finally {
    if (fd >= 0) fs.closeSync(fd);
  }
}

/** Whether process `pid` of this machine exists (one of another user counts). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Removes the temporary files in `dir` of writers of this host whose process is gone (when `only`
 * is given: those of that file and of files named after it, as STORE.idx). Returns what it
 * removed, with the bytes freed.
 */
export function removeStaleTemps(dir: string, only?: string): { files: string[]; bytes: number } {
  const out = { files: [] as string[], bytes: 0 };
  const owner = only === undefined ? undefined : path.basename(only).replace(/^\.+/, '');
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return out;
  }
  for (const name of names) {
    const m = MARK.exec(name);
    if (!m) continue;
    // The staged file's name, without the dots that staging (once or nested) put before it.
    const staged = name.slice(0, m.index).replace(/^\.+/, '');
    if (owner !== undefined && staged !== owner && !staged.startsWith(`${owner}.`)) continue;
    const pid = Number(m[1]);
    if (pid === process.pid || processAlive(pid)) continue;
    const file = path.join(dir, name);
    try {
      const size = fs.statSync(file).size;
      fs.rmSync(file);
      out.files.push(file);
      out.bytes += size;
    } catch {
      /* gone meanwhile */
    }
  }
  return out;
}

/** The note a command prints after removeStaleTemps found something, or null. */
export function describeRemoved(r: { files: string[]; bytes: number }): string | null {
  if (!r.files.length) return null;
  return `removed ${r.files.length} temporary file(s) of interrupted writes (${(r.bytes / 2 ** 20).toFixed(1)} MB): ` +
    r.files.map((f) => path.basename(f)).join(', ');
}
