// How the images of a folder tree find their records in a proposal store. soco-train keys a record
// by the image's path relative to the image root ('n01440764/n01440764_10026.JPEG'); the authors'
// proposal JSON (train_ratio3size0308post.json), imported as it is, by the file name without its
// extension ('n01440764_10026'); `proposals export --basename` by the file name. A lookup tries the
// path, then the file name, then the stem. A name that several images of the tree share cannot
// say whose boxes it holds: those images are reported (ambiguous) and get no boxes, never a guess.
import { ProposalRecord } from './proposal_store';

/** Which key of the store an image's record was found under. */
export type KeyForm = 'path' | 'name' | 'stem';

/** The part of a proposal store a lookup reads (lib/data/proposal_store.ts ProposalStore). */
export interface KeyedRecords {
  has(key: string): boolean;
  get(key: string): ProposalRecord | undefined;
}

/** An image's file name and its name without the extension (the authors' key; path.extname's rule). */
function names(file: string): { name: string; stem: string } {
  const name = file.slice(file.lastIndexOf('/') + 1);
  const dot = name.lastIndexOf('.');
  return { name, stem: dot > 0 ? name.slice(0, dot) : name };
}

export type KeyResolution = { key: string; form: KeyForm } | { ambiguous: KeyForm } | null;

/** Records of a store looked up by the images' relative paths ('/'-separated, as listImageFiles gives them). */
export class ProposalLookup {
  /** File names and stems that several images of the tree share (usually none: only they are kept). */
  private readonly sharedNames: Set<string>;
  private readonly sharedStems: Set<string>;
  /** Images whose record would come from a file name or stem that another image shares, with the
   * form (so no boxes are given to them); found up front from the names shared in the tree. */
  readonly ambiguous: { file: string; form: KeyForm }[] = [];

  constructor(readonly store: KeyedRecords, files: readonly string[]) {
    this.sharedNames = new Set();
    this.sharedStems = new Set();
    const seenNames = new Set<string>();
    const seenStems = new Set<string>();
    for (const f of files) {
      const { name, stem } = names(f);
      if (seenNames.has(name)) this.sharedNames.add(name);
      else seenNames.add(name);
      if (seenStems.has(stem)) this.sharedStems.add(stem);
      else seenStems.add(stem);
    }
    if (!this.sharedNames.size && !this.sharedStems.size) return;
    for (const f of files) {
      const { name, stem } = names(f);
      if (!this.sharedNames.has(name) && !this.sharedStems.has(stem)) continue;
      const r = this.resolve(f);
      if (r && 'ambiguous' in r) this.ambiguous.push({ file: f, form: r.ambiguous });
    }
  }

  /** The store key an image's record is under: its path, else its file name, else its stem; a
   * name or stem shared with another image of the tree is ambiguous; null when none is stored. */
  resolve(file: string): KeyResolution {
    if (this.store.has(file)) return { key: file, form: 'path' };
    const { name, stem } = names(file);
    if (name !== file && this.store.has(name)) return this.sharedNames.has(name) ? { ambiguous: 'name' } : { key: name, form: 'name' };
    if (stem !== name && this.store.has(stem)) return this.sharedStems.has(stem) ? { ambiguous: 'stem' } : { key: stem, form: 'stem' };
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
