// The image files of a folder tree, as every command names them: sorted '/'-separated paths
// relative to the root, which are also the proposal store's keys.
import * as fs from 'fs';
import * as path from 'path';

/** Extensions the decoder reads (lib/data/image.ts). */
export const IMAGE_EXT = /\.(jpe?g|png|webp)$/i;

/** Image files under root (recursively), sorted, as '/'-separated paths relative to root. */
export function listImageFiles(root: string): string[] {
  const out: string[] = [];
  const walk = (rel: string): void => {
    const entries = fs.readdirSync(path.join(root, rel), { withFileTypes: true });
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const e of entries) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) walk(r);
      else if ((e.isFile() || e.isSymbolicLink()) && IMAGE_EXT.test(e.name)) out.push(r);
    }
  };
  walk('');
  return out;
}

/**
 * A sort key that orders '/'-separated relative paths as listImageFiles lists them: name by name
 * down the tree ('/' becomes NUL, which sorts before any character a file name can hold).
 */
export function imageOrderKey(rel: string): string {
  return rel.replaceAll('/', '\u0000');
}
