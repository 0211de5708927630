// Checkpoint files of a run (timm CheckpointSaver style): numbered files OUT/checkpoint-<step>.pth,
// the newest N kept, and OUT/last.pth always the newest. Each file is written by an atomic writer
// (temp file + fsync + rename), and last.pth is switched by a hard link + rename, so a crash or a
// full disk at any moment leaves the previous checkpoint intact and last.pth never half-written.
import * as fs from 'fs';
import * as path from 'path';
import { syncDir, tempPathFor } from '../io/temp_files';

export const LAST = 'last.pth';
const NUMBERED = /^checkpoint-(\d+)\.pth$/;

export interface SavedCheckpoint { path: string; step: number }

/** Writes `state` to exactly `file`, atomically (e.g. lib/torch's save()). */
export type AtomicWriter = (file: string) => void;

export class CheckpointSaver {
  constructor(readonly dir: string, readonly keep: number) {
    if (!Number.isInteger(keep) || keep < 1) throw new RangeError(`CheckpointSaver: keep must be a positive integer, got ${keep}`);
  }

  get lastPath(): string { return path.join(this.dir, LAST); }

  /** Numbered checkpoints on disk, oldest first. */
  list(): SavedCheckpoint[] {
    if (!fs.existsSync(this.dir)) return [];
    return fs.readdirSync(this.dir)
      .map((f) => ({ f, m: NUMBERED.exec(f) }))
      .filter((x) => x.m)
      .map((x) => ({ path: path.join(this.dir, x.f), step: Number(x.m![1]) }))
      .sort((a, b) => a.step - b.step);
  }

  pathFor(step: number): string { return path.join(this.dir, `checkpoint-${String(step).padStart(8, '0')}.pth`); }

  /**
   * Writes the checkpoint of `step` with `write`, points last.pth at it, then deletes numbered
   * files beyond the newest `keep`. If `write` throws, nothing else changes.
   */
  save(step: number, write: AtomicWriter): SavedCheckpoint {
    fs.mkdirSync(this.dir, { recursive: true });
    const file = this.pathFor(step);
    write(file);
    const tmp = tempPathFor(this.lastPath);
    try {
      fs.linkSync(file, tmp);
    } catch {
      // Filesystems without hard links: a copy (the rename below still makes the switch atomic).
      fs.copyFileSync(file, tmp);
    }
    fs.renameSync(tmp, this.lastPath);
    syncDir(this.dir);
    const all = this.list();
    for (const old of all.slice(0, Math.max(0, all.length - this.keep))) if (old.path !== file) fs.rmSync(old.path, { force: true });
    return { path: file, step };
  }
}

/**
 * Fails early, naming the folder, when it cannot hold `bytes` more (a checkpoint about to be
 * written twice over during the switch). Returns the free bytes.
 */
export function checkFreeSpace(dir: string, bytes: number): number {
  const st = fs.statfsSync(dir);
  const free = Number(st.bavail) * Number(st.bsize);
  if (free < bytes)
    throw new Error(`output folder ${dir}: ${(free / 2 ** 30).toFixed(2)} GiB free, a checkpoint needs about ${(bytes / 2 ** 30).toFixed(2)} GiB: free some space or choose another --out`);
  return free;
}
