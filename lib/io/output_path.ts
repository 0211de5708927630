// Output paths are checked before any work, by every command that writes: a bad --out is one
// clear error within a second, not a failure hours later. Pseudo file systems are refused by
// their type: Node's mkdirSync(p, { recursive: true }) never returns on a path under /proc (it
// spins at 100% CPU, deaf to SIGTERM), so such a path must not reach it.
import * as fs from 'fs';
import * as path from 'path';

export class OutputPathError extends Error {
  override name = 'OutputPathError';
}

/** statfs f_type of the kernel's pseudo file systems (linux/magic.h): they hold no user files. */
const PSEUDO_FS: ReadonlyMap<number, string> = new Map([
  [0x9fa0, 'proc'], [0x62656572, 'sysfs'], [0x1cd1, 'devpts'], [0x27e0eb, 'cgroup'], [0x63677270, 'cgroup2'],
  [0x64626720, 'debugfs'], [0x73636673, 'securityfs'], [0x74726163, 'tracefs'], [0xcafe4a11, 'bpf'],
  [0x6165676c, 'pstore'], [0x62656570, 'configfs'], [0x65735543, 'fusectl'], [0x42494e4d, 'binfmt_misc'],
  [0xf97cff8c, 'selinuxfs'], [0x67596969, 'rpc_pipefs'], [0x19800202, 'mqueue'], [0x50495045, 'pipefs'],
]);

export interface OutputPathOptions {
  /** How the user gave the path, for the messages: '--out', '--config-out'. */
  flag: string;
  /** 'dir': a folder the command creates or fills; 'file': a file it creates or replaces. */
  kind: 'dir' | 'file';
}

/**
 * Checks that `target` can be written (created, with any missing folders above it) and returns
 * it resolved. Throws OutputPathError naming the flag and the reason: a path under a pseudo file
 * system (/proc, /sys, ...) or /dev, an existing path of the wrong kind, a file where a folder is
 * needed on the way, or a folder that cannot be written (permissions, read-only file system).
 */
export function checkOutputPath(target: string, o: OutputPathOptions): string {
  const abs = path.resolve(target);
  const fail = (why: string): never => { throw new OutputPathError(`${o.flag} ${target}: ${why}`); };
  // The closest existing path: the folder where the first missing level would be created.
  let existing = abs;
  let st = statOrNull(existing);
  while (!st) {
    const up = path.dirname(existing);
    if (up === existing) fail('no part of it exists');
    existing = up;
    st = statOrNull(existing);
  }
  const pseudo = PSEUDO_FS.get(Number(fs.statfsSync(existing).type));
  if (pseudo) fail(`it is on the kernel's ${pseudo} pseudo file system, which cannot hold output files; choose a folder on a disk`);
  if (abs === '/dev' || (abs.startsWith('/dev/') && !abs.startsWith('/dev/shm/') && abs !== '/dev/shm'))
    fail('it is under /dev, which holds device files, not output files; choose a folder on a disk');
  if (existing === abs) {
    if (o.kind === 'dir' && !st.isDirectory()) fail('it exists and is not a folder');
    if (o.kind === 'file' && st.isDirectory()) fail('it is a folder; give a file name');
    if (o.kind === 'file' && !st.isFile()) fail('it exists and is not a regular file');
  }
  // New files (and, for a file, its temporary sibling) are made in this folder.
  const dir = existing === abs && o.kind === 'file' ? path.dirname(abs) : existing;
  const dst = existing === abs && o.kind === 'file' ? statOrNull(dir) : st;
  if (!dst?.isDirectory()) fail(`${dir} is a file, not a folder`);
  try {
    fs.accessSync(dir, fs.constants.W_OK | fs.constants.X_OK);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    fail(`${dir} is not writable (${code === 'EROFS' ? 'read-only file system' : code === 'EACCES' ? 'permission denied' : code ?? (e as Error).message})`);
  }
  return abs;
}

function statOrNull(p: string): fs.Stats | null {
  try {
    return fs.statSync(p);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return null;
    // ENOTDIR: a file on the way (a/file/b); the caller reports it at that file.
    if (code === 'ENOTDIR') return null;
    throw e;
  }
}
