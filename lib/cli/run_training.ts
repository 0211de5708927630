// Running a SoCoTrainer from a command (`train`, `demo`): the resolved config as printed, console
// progress, and Ctrl-C / SIGTERM handling.
import { ResolvedConfig, TrainConfig } from '../train/config';
import { SoCoTrainer, CheckpointEvent, TrainResult } from '../train/trainer';
import { MetricRecord } from '../train/metrics';
import { INTERRUPTED_EXIT_CODE, RendezvousError } from '../distributed';

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
    if (trainer.atRendezvous) log(`\n${sig}: leaving the rendezvous (no iteration has run: nothing to checkpoint)`);
    else say(`\n${sig}: stopping after this iteration and writing a checkpoint (Ctrl-C again to abort)`);
    trainer.stop(sig);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  trainer.on('log', (_r: MetricRecord, line: string) => say(line));
  trainer.on('warning', (m: string) => (trainer.isMain ? log(`warning: ${m}`) : console.error(`warning: ${m}`)));
  trainer.on('data', (d: { images: number; itersPerEpoch: number; workers: number; prefetch: number }) =>
    say(`data: ${d.images} images, ${d.itersPerEpoch} iterations per epoch; ${d.workers} images decoded at once (--workers), ${d.prefetch} batches prepared ahead`));
  trainer.on('resume', (e: { path: string; step: number }) => say(`resuming from ${e.path} at iteration ${e.step}`));
  trainer.on('checkpoint', (e: CheckpointEvent) => say(`checkpoint (${e.reason}) ${e.path} at iteration ${e.step}`));
  try {
    let r: TrainResult;
    try {
      r = await trainer.train();
    } catch (err) {
      // A stop at the rendezvous is no failure: the job never started.
      if (!(err instanceof RendezvousError && err.interrupted)) throw err;
      log(err.message);
      return INTERRUPTED_EXIT_CODE;
    }
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
