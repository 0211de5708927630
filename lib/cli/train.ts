// `soco-train train`: every config key is a flag (lib/train/config.ts), layered
// defaults < --preset < --config file < flags. Ctrl-C or SIGTERM stops after the current
// iteration with a checkpoint and exits 0; a second Ctrl-C aborts at once.
// `--nproc-per-node N` (with --nnodes/--node-rank/--master-addr/--master-port for several
// machines) makes this process the launcher: it starts N workers running this same command and
// exits with their result. A worker, or a process that torchrun or srun started, joins the job
// inside SoCoTrainer; rank 0 prints, the other ranks only report warnings and errors.
import { Command, Option } from 'commander';
import * as path from 'path';
import { CONFIG_FIELDS, PRESETS, TrainConfig, flagHelp, resolveConfig } from '../train/config';
import { SoCoTrainer } from '../train/trainer';
import { formatConfig, runTraining } from './run_training';
import * as dist from '../distributed';
import { checkOutputPath } from '../io/output_path';

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
    // Before the launcher starts workers that would each find out.
    checkOutputPath(resolved.config.out, { flag: '--out', kind: 'dir' });
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
}
