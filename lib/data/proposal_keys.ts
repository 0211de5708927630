// How the images of a folder tree find their records in a proposal store. soco-train keys a record
// by the image's path relative to the image root ('n01440764/n01440764_10026.JPEG'); the authors'
// proposal JSON (train_ratio3size0308post.json), imported as it is, by the file name without its
// extension ('n01440764_10026'); `proposals export --basename` by the file name. A lookup tries the
// path, then the file name, then the stem. A name that several images of the tree share cannot
// say whose boxes it holds: those images are reported (ambiguous) and get no boxes, never a guess.
import * as path from 'path';
import { ProposalRecord } from './proposal_store';

/** Which key of the store an image's record was found under. */
export type KeyForm = 'path' | 'name' | 'stem';

/** The part of a proposal store a lookup reads (lib/data/proposal_store.ts ProposalStore). */
export interface KeyedRecords {
  has(key: string): boolean;
  get(key: string): ProposalRecord | undefined;
}

/** An image's file name and its name without the extension (the authors' key). */
function names(file: string): { name: string; stem: string } {
  const name = file.slice(file.lastIndexOf('/') + 1);
  const ext = path.extname(name);
  return { name, stem: ext ? name.slice(0, -ext.length) : name };
}

function counts(values: Iterable<string>): Map<string, number> {
  const m = new Map<string, number>();
  for (const v of values) m.set(v, (m.get(v) ?? 0) + 1);
  return m;
}

export type KeyResolution = { key: string; form: KeyForm } | { ambiguous: KeyForm } | null;

/** Records of a store looked up by the images' relative paths ('/'-separated, as listImageFiles gives them). */
export class ProposalLookup {
  private readonly nameCount: Map<string, number>;
  private readonly stemCount: Map<string, number>;
  /** Images whose record would come from a file name or stem that another image shares, with the
   * form (so no boxes are given to them); found up front from the names shared in the tree. */
  readonly ambiguous: { file: string; form: KeyForm }[] = [];

  constructor(readonly store: KeyedRecords, files: readonly string[]) {
    const split = files.map(names);
    this.nameCount = counts(split.map((n) => n.name));
    this.stemCount = counts(split.map((n) => n.stem));
    files.forEach((f, i) => {
      if ((this.nameCount.get(split[i].name) ?? 0) < 2 && (this.stemCount.get(split[i].stem) ?? 0) < 2) return;
      const r = this.resolve(f);
      if (r && 'ambiguous' in r) this.ambiguous.push({ file: f, form: r.ambiguous });
    });
  }

  /** The store key an image's record is under: its path, else its file name, else its stem; a
   * name or stem shared with another image of the tree is ambiguous; null when none is stored. */
  resolve(file: string): KeyResolution {
    if (this.store.has(file)) return { key: file, form: 'path' };
    const { name, stem } = names(file);
    if (name !== file && this.store.has(name)) return (this.nameCount.get(name) ?? 0) > 1 ? { ambiguous: 'name' } : { key: name, form: 'name' };
    if (stem !== name && this.store.has(stem)) return (this.stemCount.get(stem) ?? 0) > 1 ? { ambiguous: 'stem' } : { key: stem, form: 'stem' };
    return null;
  }

  /** The record of an image (relative path); undefined when there is none or its key is ambiguous. */
  get(file: string): ProposalRecord | undefined {
    const r = this.resolve(file);
    return r && 'key' in r ? this.store.get(r.key) : undefined;
  }

  has(file: string): boolean {
    const r = this.resolve(file);
    return r !== null && 'key' in r;
  }
}
