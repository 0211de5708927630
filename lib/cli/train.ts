// `soco-train train`: every config key is a flag (lib/train/config.ts), layered
// defaults < --preset < --config file < flags. Ctrl-C or SIGTERM stops after the current
// iteration with a checkpoint and exits 0; a second Ctrl-C aborts at once.
// `--nproc-per-node N` (with --nnodes/--node-rank/--master-addr/--master-port for several
// machines) makes this process the launcher: it starts N workers running this same command and
// exits with their result. A worker, or a process that torchrun or srun started, joins the job
// inside SoCoTrainer; rank 0 prints, the other ranks only report warnings and errors.
// registerTrainCommands() also registers `plot`, `eval-retrieval` and `demo`.
import { Command, Option } from 'commander';
import * as path from 'path';
import { CONFIG_FIELDS, PRESETS, TrainConfig, flagHelp, resolveConfig, ResolvedConfig } from '../train/config';
import { SoCoTrainer, CheckpointEvent } from '../train/trainer';
import { MetricRecord } from '../train/metrics';
import { registerPlotCommand } from './plot';
import { registerDemoCommand, formatRetrieval } from './demo';
import { evalRetrieval } from '../train/eval_retrieval';
import * as dist from '../dist';

/** Adds one option per config key (no commander defaults: unset flags must not override the file). */
export function addConfigFlags(cmd: Command): Command {
  const help = new Map(flagHelp().map((h) => [h.flag, h]));
  for (const key of Object.keys(CONFIG_FIELDS) as (keyof TrainConfig)[]) {
    const flag = `--${key.replace(/[A-Z]/g, (m) => `-${m.toLowerCase()}`)}`;
    const h = help.get(flag)!;
    if (key === 'resume') {
      cmd.addOption(new Option('--resume [checkpoint]', "continue the run in --out (default when it has last.pth), or from CHECKPOINT").argParser((v) => v));
      cmd.addOption(new Option('--no-resume', 'start fresh (refuses an --out that already holds a run)'));
      continue;
    }
    if (CONFIG_FIELDS[key].kind === 'bool') {
      cmd.addOption(new Option(`${flag} [bool]`, h.help));
      cmd.addOption(new Option(`--no-${flag.slice(2)}`, `same as ${flag} false`).hideHelp());
    } else {
      cmd.addOption(new Option(`${flag} ${h.arg}`, h.help));
    }
  }
  return cmd;
}

/** Commander's parsed options -> config overrides (only the flags actually given). */
export function overridesFromOptions(opts: Record<string, unknown>): Partial<Record<keyof TrainConfig, unknown>> {
  const out: Partial<Record<keyof TrainConfig, unknown>> = {};
  for (const key of Object.keys(CONFIG_FIELDS) as (keyof TrainConfig)[]) {
    const v = opts[key];
    if (v === undefined) continue;
    if (key === 'resume') out.resume = v === true ? 'must' : v === false ? 'never' : path.resolve(String(v));
    else if (key === 'images' || key === 'proposals' || key === 'out') out[key] = path.resolve(String(v));
    else out[key] = v === true ? 'true' : v === false ? 'false' : v;
  }
  return out;
}

/** The resolved config, one key per line, marking values that are not the defaults. */
export function formatConfig(r: ResolvedConfig): string {
  const lines = [`config (presets: ${r.presets.join(', ') || 'none'}):`];
  for (const k of Object.keys(r.config) as (keyof TrainConfig)[]) {
    const v = r.config[k];
    const shown = Array.isArray(v) ? v.map((x) => +Number(x).toFixed(4)).join(',') : String(v);
    lines.push(`  ${k.padEnd(18)} ${shown}${r.origin[k] === 'default' ? '' : `   (${r.origin[k]})`}`);
  }
  return lines.join('\n');
}

/**
 * Runs a trainer with console progress and signal handling; resolves with the process exit code.
 * By default it also writes the Detectron2 export after a complete run and closes the trainer.
 */
export async function runTraining(trainer: SoCoTrainer, log: (s: string) => void = console.log,
  o: { export?: boolean; close?: boolean } = {}): Promise<number> {
  let signals = 0;
  // In a job only rank 0 talks; the others' warnings go to stderr, which the launcher tags with the rank.
  const say = (s: string): void => { if (trainer.isMain) log(s); };
  const onSignal = (sig: NodeJS.Signals): void => {
    signals++;
    if (signals > 1) {
      log(`\n${sig} again: aborting without a checkpoint`);
      process.exit(130);
    }
    say(`\n${sig}: stopping after this iteration and writing a checkpoint (Ctrl-C again to abort)`);
    trainer.stop(sig);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  trainer.on('log', (_r: MetricRecord, line: string) => say(line));
  trainer.on('warning', (m: string) => (trainer.isMain ? log(`warning: ${m}`) : console.error(`warning: ${m}`)));
  trainer.on('resume', (e: { path: string; step: number }) => say(`resuming from ${e.path} at iteration ${e.step}`));
  trainer.on('checkpoint', (e: CheckpointEvent) => say(`checkpoint (${e.reason}) ${e.path} at iteration ${e.step}`));
  try {
    const r = await trainer.train();
    if (!trainer.isMain) return 0;
    if (r.stoppedEarly) log(`stopped at iteration ${r.steps}; continue with the same command (it resumes from ${r.lastCheckpoint})`);
    else log(`done: ${r.steps} iterations, final loss ${r.finalLoss.toFixed(4)}; last checkpoint ${r.lastCheckpoint}`);
    if (!r.stoppedEarly && o.export !== false) {
      const exported = trainer.exportDetectron2();
      log(`Detectron2 weights: ${exported.weights}\nfine-tuning config: ${exported.config}`);
    }
    return 0;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    if (o.close !== false) await trainer.close();
  }
}

export function registerTrainCommands(program: Command): void {
  const train = program.command('train')
    .description('SoCo pretraining (defaults: the paper; every config key is a flag)')
    .option('--config <file>', 'config file (JSON, or YAML with the yaml package): defaults < --preset < file < flags')
    .option('--preset <names>', `comma-separated presets applied in order: ${Object.keys(PRESETS).join(', ')}`)
    .option('--print-config', 'print the resolved config and exit');
  addConfigFlags(train);
  dist.addLaunchOptions(train);
  train.addHelpText('after', `\nPresets:\n${Object.entries(PRESETS).map(([k, p]) => `  ${k.padEnd(10)} ${p.help}`).join('\n')}\n`);
  train.action(async (opts: Record<string, unknown>) => {
    const resolved = resolveConfig({ presets: opts.preset as string | undefined, file: opts.config as string | undefined, overrides: overridesFromOptions(opts) });
    const launch = dist.launchOptionsFrom(opts);
    const worker = dist.isLaunchedWorker();
    const launching = launch !== null && !worker && launch.nprocPerNode * (launch.nnodes ?? 1) > 1;
    // Once per job: by our launcher, else by rank 0 (under torchrun or srun).
    if (launching || (!worker && (dist.readDistEnv()?.rank ?? 0) === 0)) console.log(formatConfig(resolved));
    if (opts.printConfig) return;
    if (launching && launch) {
      const b = resolved.config.batchSize;
      const world = launch.nprocPerNode * (launch.nnodes ?? 1);
      if (b % world !== 0) throw new Error(`--batch-size ${b} is the global batch: it must divide by the ${world} processes (--nproc-per-node x --nnodes)`);
      // The workers run this same command line; they see SOCO_DIST_WORKER and train instead of launching.
      const r = await dist.launch(launch);
      process.exitCode = r.exitCode;
      return;
    }
    const code = await runTraining(new SoCoTrainer(resolved));
    if (code !== 0) process.exitCode = code;
  });
  registerPlotCommand(program);
  registerEvalRetrievalCommand(program);
  registerDemoCommand(program);
}

function positiveInt(name: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1) throw new Error(`${name} must be a positive integer, got ${v}`);
    return n;
  };
}

export function registerEvalRetrievalCommand(program: Command): void {
  program.command('eval-retrieval')
    .description('top-1 retrieval of each proposal across two augmented views of held-out photos: pretrained vs random init')
    .option('--checkpoint <file>', 'soco-train checkpoint (without one: the random network only)')
    .requiredOption('--images <dir>', 'held-out images')
    .requiredOption('--proposals <file>', 'proposal store of those images')
    .option('--rounds <n>', 'rounds of fresh augmented views', positiveInt('--rounds'), 10)
    .option('--k <n>', 'proposals per image per round', positiveInt('--k'), 8)
    .option('--seed <n>', 'seed of views and of the random network', (v) => Number(v), 0)
    .addOption(new Option('--bn <mode>', 'BatchNorm statistics: batch (training mode) or running').choices(['batch', 'running']).default('batch'))
    .addOption(new Option('--device <d>', 'device').default('cpu'))
    .action(async (o: { checkpoint?: string; images: string; proposals: string; rounds: number; k: number; seed: number; bn: 'batch' | 'running'; device: string }) => {
      const r = await evalRetrieval({ ...o, images: path.resolve(o.images), proposals: path.resolve(o.proposals), checkpoint: o.checkpoint && path.resolve(o.checkpoint) });
      console.log(formatRetrieval(r));
    });
}
