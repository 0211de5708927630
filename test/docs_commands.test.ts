// Every `soco-train ...` command line written in README.md and docs/*.md goes through the CLI's
// parser (every command's action replaced by a check that does no work), so the docs cannot drift
// from the flags: a renamed or misspelt flag, a value its parser rejects, a missing required option
// or a command that does not exist fails here, naming the file and line.
import { strict as assert } from 'assert';
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Command, CommanderError } from 'commander';
import { buildProgram } from '../lib/cli/main';
import { buildInfo } from '../lib/torch';
import { overridesFromOptions } from '../lib/cli/train';
import { resolveConfig } from '../lib/train/config';
import { launchOptionsFrom } from '../lib/distributed/launch';

const ROOT = path.resolve(__dirname, '..', '..');
const DOCS = ['README.md', ...fs.readdirSync(path.join(ROOT, 'docs')).filter((f) => f.endsWith('.md')).map((f) => path.join('docs', f))];

/** `inline`: a code span in prose, which may name only some of a command's options. */
interface DocCommand { where: string; text: string; inline: boolean }

/** The command lines of a markdown file: fenced shell lines (continuations joined, comments cut) and inline code spans. */
export function docCommands(file: string, text: string): DocCommand[] {
  const out: DocCommand[] = [];
  const take = (line: number, s: string, inline: boolean): void => {
    const m = /(?:^|[\s(`])(soco-train\s+[a-z].*)$/.exec(s.trim());
    if (m) out.push({ where: `${file}:${line}`, text: m[1].trim(), inline });
  };
  const lines = text.split('\n');
  let fence = false;
  for (let i = 0; i < lines.length; i++) {
    if (/^\s*```/.test(lines[i])) { fence = !fence; continue; }
    if (!fence) continue;
    const start = i;
    let s = lines[i];
    while (/\\\s*$/.test(s) && i + 1 < lines.length) s = s.replace(/\\\s*$/, ' ') + lines[++i];
    take(start + 1, s.replace(/(^|\s)#.*$/, ''), false);
  }
  // Inline code may wrap across lines; fenced blocks are cut out first.
  const prose = text.replace(/```[\s\S]*?```/g, (b) => b.replace(/[^\n]/g, ' '));
  for (const m of prose.matchAll(/`([^`]+)`/g)) {
    if (!/^(npx\s+|srun\s+)?soco-train\s+[a-z]/.test(m[1].trim())) continue;
    take(prose.slice(0, m.index).split('\n').length, m[1].replace(/\s+/g, ' '), true);
  }
  return out;
}

/** The program with every action replaced by `check`: parsing runs, no command does any work. */
function parseOnly(check: (cmd: Command, opts: Record<string, unknown>) => void): Command {
  const program = buildProgram();
  const walk = (c: Command): void => {
    c.exitOverride().configureOutput({ writeOut: () => undefined, writeErr: () => undefined });
    if (!c.commands.length) c.action((opts: Record<string, unknown>) => check(c, opts));
    c.commands.forEach(walk);
  };
  walk(program);
  return program;
}

/** train's values are checked as the command checks them before any work (config layering, launch flags). */
function checkValues(cmd: Command, opts: Record<string, unknown>): void {
  if (cmd.name() !== 'train') return;
  launchOptionsFrom(opts);
  if (opts.config === undefined) resolveConfig({ presets: opts.preset as string | undefined, overrides: overridesFromOptions(opts) });
}

/**
 * A doc line as argv for the parser: synopsis brackets dropped, the first of `a|b` alternatives,
 * single-letter placeholders (N, K, S) as a number, `...` as a value where an option needs one and
 * dropped elsewhere. A line that only names commands (`soco-train proposals export|import|show`)
 * becomes `--help` of each: the commands must exist.
 */
function toArgv(program: Command, text: string): string[][] {
  const tokens = text.replace(/\\\|/g, '|').replace(/[[\]]/g, '').split(/\s+/).filter(Boolean);
  const i = tokens.indexOf('soco-train');
  const rest = tokens.slice(i + 1);
  // The command path; alternatives of a leaf (export|import|show) each make one line.
  let cmd = program;
  const names: string[] = [];
  while (rest.length && !rest[0].startsWith('-') && rest[0] !== '...') {
    const alts = rest[0].split('|');
    const next = cmd.commands.find((c) => c.name() === alts[0]);
    if (!next) break;
    if (alts.length > 1) return alts.flatMap((a) => toArgv(program, ['soco-train', ...names, a, ...rest.slice(1)].join(' ')));
    names.push(rest.shift() as string);
    cmd = next;
  }
  // Only names (`soco-train eval-retrieval`, `soco-train train ...`): the path must exist, nothing more.
  if (!rest.some((t) => t.startsWith('-'))) return rest.every((t) => t === '...') ? [[...names, '--help']] : [[...names, ...rest]];
  const args: string[] = [];
  for (const t of rest) {
    const prev = args[args.length - 1];
    const wantsValue = prev !== undefined && prev.startsWith('--') &&
      cmd.options.some((o) => o.long === prev && (o.required || o.optional)) && !prev.includes('=');
    if (t === '...') { if (wantsValue) args.push('x'); continue; }
    if (/^[A-Z]$/.test(t)) { args.push('2'); continue; }
    args.push(t.split('|')[0]);
  }
  return [[...names, ...args]];
}

function parseLine(argv: string[], inline = false): void {
  const program = parseOnly(checkValues);
  try {
    program.parse(['node', 'soco-train', ...argv]);
  } catch (e) {
    if (e instanceof CommanderError && (e.code === 'commander.helpDisplayed' || e.code === 'commander.help')) return;
    // A span in prose (`soco-train views --layout official`) shows some options, not the required ones.
    if (inline && e instanceof CommanderError && e.code === 'commander.missingMandatoryOptionValue') return;
    throw e;
  }
}

describe('command lines in README.md and docs/', () => {
  const all = DOCS.flatMap((f) => docCommands(f, fs.readFileSync(path.join(ROOT, f), 'utf8')));

  it('finds the documented command lines', () => {
    const cmds = new Set(all.map((c) => c.text.split(/\s+/).slice(1, 3).join(' ')));
    for (const c of ['train --images', 'proposals generate', 'export --checkpoint', 'views --images', 'plot --run', 'eval-retrieval --checkpoint'])
      assert.ok([...cmds].some((x) => x.startsWith(c.split(' ')[0])), `no '${c}' line found in the docs`);
    assert.ok(all.length >= 20, `${all.length} command lines`);
  });

  it('each one parses', () => {
    const failures: string[] = [];
    for (const c of all) {
      for (const argv of toArgv(buildProgram(), c.text)) {
        try {
          parseLine(argv, c.inline);
        } catch (e) {
          failures.push(`${c.where}: ${c.text}\n    -> ${(e as Error).message.split('\n')[0]}`);
        }
      }
    }
    assert.deepEqual(failures, []);
  });

  it('a drifted line fails (the check bites)', () => {
    for (const bad of ['soco-train views --images DIR --proposals STORE --out-dir DIR', 'soco-train train --batch-size many',
      'soco-train train --device gpu', 'soco-train proposals generate --images DIR', 'soco-train trian --images DIR']) {
      assert.throws(() => { for (const argv of toArgv(buildProgram(), bad)) parseLine(argv); }, Error, bad);
    }
  });
});

describe('CLI usage errors and --device', function () {
  this.timeout(120000);
  const BIN = path.join(ROOT, 'bin', 'soco-train.js');
  const TRAIN = path.join(ROOT, 'test', 'fixtures', 'images', 'train');
  const run = (...args: string[]): { status: number | null; text: string } => {
    const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 60000 });
    return { status: r.status, text: r.stdout + r.stderr };
  };

  it('an unknown flag or command prints the error, a suggestion and where the help is, not the help', () => {
    const r = run('train', '--ouut', 'x');
    assert.equal(r.status, 1);
    assert.equal(r.text.trim(), "error: unknown option '--ouut'\n(Did you mean --out?)\n(run `soco-train train --help` for the usage)");
    const c = run('proposals', 'generat');
    assert.match(c.text, /^error: unknown command 'generat'\n\(Did you mean generate\?\)\n\(run `soco-train proposals --help` for the usage\)\n$/);
  });

  it('one --device parser: train, views and eval-retrieval take auto, cpu, cuda and cuda:N, and say when the machine has no such device', () => {
    const whyNoCuda = buildInfo().cuda ? 'none is visible' : 'this LibTorch was built without CUDA';
    for (const cmd of [['views', '--images', TRAIN, '--proposals', 'x.store', '--out', path.join(os.tmpdir(), 'soco-never')],
      ['eval-retrieval', '--images', TRAIN, '--proposals', 'x.store']]) {
      assert.match(run(...cmd, '--device', 'gpu').text, /argument 'gpu' is invalid\. --device must be auto, cpu, cuda or cuda:N/);
      const r = run(...cmd, '--device', 'cuda:1');
      assert.equal(r.status, 1);
      assert.match(r.text, new RegExp(`soco-train: --device cuda:1: no CUDA device here \\(${whyNoCuda}\\); use --device cpu or auto`));
    }
    const store = path.join(os.tmpdir(), `soco-device-${process.pid}.store`);
    fs.writeFileSync(store, '');  // only its existence is checked before the device
    const t = run('train', '--images', TRAIN, '--proposals', store, '--out', path.join(os.tmpdir(), 'soco-never'), '--device', 'cuda:1');
    fs.rmSync(store);
    assert.ok(!fs.existsSync(path.join(os.tmpdir(), 'soco-never')), 'a refused command creates nothing');
    assert.match(t.text, /device\s+cuda:1\s+\(flag\)[\s\S]*soco-train: --device cuda:1: no CUDA device here/);
    assert.match(run('train', '--device', 'gpu').text, /flag --device: device must be auto, cpu, cuda or cuda:N, got "gpu"/);
  });
});
