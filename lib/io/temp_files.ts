// Atomic writes: FILE is written as .FILE.<pid>.<random>.tmp in the same folder, then renamed over
// FILE, so a reader sees the old file or the new one, never half of one. A writer killed with -9
// leaves its temporary file behind (a checkpoint's is tens of MB or more); the writer's pid in the
// name lets the next run remove exactly those whose writer is gone.
import { randomBytes } from 'crypto';
import * as fs from 'fs';
import * as path from 'path';

const TEMP = /^\.(.+)\.(\d+)\.[0-9a-f]+\.tmp$/;

/** The temporary sibling that an atomic write of `file` by this process goes through. */
export function tempPathFor(file: string): string {
  return path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
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
 * Removes the temporary files in `dir` left by atomic writes whose process is gone (of `only`
 * when given: that file's alone). Returns what it removed, with the bytes freed.
 */
export function removeStaleTemps(dir: string, only?: string): { files: string[]; bytes: number } {
  const out = { files: [] as string[], bytes: 0 };
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return out;
  }
  for (const name of names) {
    const m = TEMP.exec(name);
    if (!m || (only !== undefined && m[1] !== path.basename(only))) continue;
    const pid = Number(m[2]);
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
