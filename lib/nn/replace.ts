import { Module } from './module';

/**
 * Replaces, throughout `root`, every child module for which `fn` returns a new module (e.g. each
 * BatchNorm by a SyncBatchNorm carrying over its parameters and buffers). Names do not change,
 * so state dicts stay compatible. Returns the number of modules replaced. The root itself is
 * never replaced.
 */
export function replaceModules(root: Module, fn: (m: Module, name: string) => Module | undefined): number {
  let count = 0;
  for (const [prefix, parent] of [...root.namedModules()]) {
    for (const [name, child] of [...parent.namedChildren()]) {
      const full = prefix ? `${prefix}.${name}` : name;
      const repl = fn(child, full);
      if (repl && repl !== child) {
        (parent as unknown as Record<string, Module>)[name] = repl;
        count++;
      }
    }
  }
  return count;
}
