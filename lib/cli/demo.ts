// `npm run demo` (`soco-train demo`): SoCo on the photos shipped in test/fixtures/images, small
// enough for a 2-core CPU in about three minutes: selective-search proposals, pretraining of a
// ResNet-18 FPN with the paper's head, the Detectron2 export, the curves, and the retrieval test
// on held-out photos (pretrained vs random init).
import { Command } from 'commander';
import * as fs from 'fs';
import * as path from 'path';
import { generate } from './proposals';
import { resolveConfig, TrainConfig } from '../train/config';
import { SoCoTrainer } from '../train/trainer';
import { plotRun } from '../train/plot';
import { evalRetrieval } from '../train/eval_retrieval';
import { formatConfig, runTraining } from './run_training';
import { formatRetrieval } from './eval_retrieval';
import { checkOutputPath } from '../io/output_path';

const PACKAGE_ROOT = path.resolve(__dirname, '..', '..', '..');
export const DEMO_IMAGES = path.join(PACKAGE_ROOT, 'test', 'fixtures', 'images');

/**
 * The demo's training config: the paper's method at toy scale. Changed from the paper, and why:
 *  - ResNet-18, 1024-wide MLPs, no R-CNN head (the head's 12544x1024 fc and four convs per box):
 *    CPU time. The FPN and everything below it, which Detectron2 receives, train.
 *  - Views V1 128, V2 96, V3 48 (paper 224/224/112): 3.2x fewer pixels per image than V1 160 with
 *    the paper's V2/V3, so 100 iterations fit where 60 did. The ratios keep the paper's point
 *    (V3 is V2 at half size, so a box drops an FPN level there).
 *  - batch 8 (11 photos), K = 8 proposals per image (more loss terms per decoded image), 100
 *    iterations with 10 of warmup.
 *  - base lr 64, i.e. a peak lr of 2 instead of 1.0 x 8 / 256 = 0.03: under LARS each weight
 *    tensor moves by lr x 0.001 of its norm per step whatever the batch size, so the linear scaling
 *    rule would leave a batch of 8 nearly still.
 * Measured on the held-out photos (same-proposal / same-object / same-image top-1, pretrained vs
 * random init, `soco-train eval-retrieval`, 216 queries), 100 iterations each:
 *   this config (views 128/96/48)          48.1 / 63.9 / 68.5  vs  36.1 / 40.3 / 50.9
 *   views 96/64/32                         44.9 / 55.6 / 61.1  vs  37.5 / 44.4 / 51.9
 *     same, no box jitter                  42.1 / 50.9 / 56.5
 *     same, K = 16                         41.2 / 47.7 / 57.4
 *     same, peak lr 4                      42.1 / 52.8 / 61.6
 *     same, batch 11 (peak lr 2)           44.9 / 51.4 / 64.8
 *   V1 160, V2 224, V3 112, 60 iterations  38.4 / 50.5 / 76.4  vs  34.7 / 41.7 / 52.3 (the previous demo)
 */
export function demoConfig(out: string, proposals: string, iterations: number): Partial<TrainConfig> {
  return {
    images: path.join(DEMO_IMAGES, 'train'), proposals, out, depth: 18, head: false, v1Size: 128, v2Size: 96, v3Size: 48, k: 8,
    projectorHidden: 1024, predictorHidden: 1024, batchSize: 8, maxIters: iterations, epochs: iterations,
    warmupEpochs: Math.max(1, Math.round(iterations / 10)), baseLr: 64,
    logEvery: 5, checkpointEvery: 20, checkpointEveryEpochs: 0, keepCheckpoints: 1, prefetch: 1,
  };
}

async function ensureProposals(images: string, store: string, log: (s: string) => void): Promise<void> {
  log(`proposals: selective search on ${images} -> ${store}`);
  fs.mkdirSync(path.dirname(store), { recursive: true });
  const r = await generate({ images, out: store, workers: 2, preset: 'paper', maxSide: 0, filter: true, quiet: true });
  if (r.interrupted) throw new Error('interrupted while generating proposals; run the demo again to continue');
}

export function registerDemoCommand(program: Command): void {
  program.command('demo')
    .description('pretrain on the bundled photos (~3 minutes on 2 CPU cores), export, plot, and score retrieval')
    .option('--out <dir>', 'output folder', 'soco-demo')
    .option('--iterations <n>', 'training iterations', (v) => Number(v), 100)
    .option('--minutes <m>', 'stop training (with a checkpoint) after this long, whatever the iteration', (v) => Number(v), 6)
    .action(async (o: { out: string; iterations: number; minutes: number }) => {
      if (!(Number.isInteger(o.iterations) && o.iterations >= 1)) throw new Error(`--iterations must be a positive integer, got ${o.iterations}`);
      if (!(o.minutes > 0)) throw new Error(`--minutes must be positive, got ${o.minutes}`);
      const out = checkOutputPath(o.out, { flag: '--out', kind: 'dir' });
      const log = (s: string): void => console.log(s);
      const t0 = Date.now();
      const trainStore = path.join(out, 'proposals', 'train.store');
      const heldStore = path.join(out, 'proposals', 'heldout.store');
      await ensureProposals(path.join(DEMO_IMAGES, 'train'), trainStore, log);
      await ensureProposals(path.join(DEMO_IMAGES, 'heldout'), heldStore, log);
      const resolved = resolveConfig({ overrides: demoConfig(path.join(out, 'run'), trainStore, o.iterations) });
      log(formatConfig(resolved));
      const trainer = new SoCoTrainer(resolved);
      const budget = setTimeout(() => {
        log(`time budget of ${o.minutes} min reached: stopping after this iteration`);
        trainer.stop('time budget');
      }, o.minutes * 60000 - (Date.now() - t0));
      budget.unref();
      let exported: { weights: string; config: string };
      try {
        const code = await runTraining(trainer, log, { export: false, close: false });
        if (code !== 0) { process.exitCode = code; return; }
        exported = trainer.exportDetectron2();
      } finally {
        clearTimeout(budget);
        await trainer.close();
      }
      const plots = plotRun(trainer.outDir);
      log('retrieval: held-out photos, pretrained vs random init ...');
      const r = await evalRetrieval({ checkpoint: path.join(trainer.outDir, 'last.pth'), images: path.join(DEMO_IMAGES, 'heldout'), proposals: heldStore, rounds: 10 });
      fs.writeFileSync(path.join(out, 'retrieval.json'), JSON.stringify(r, null, 2) + '\n');
      log(formatRetrieval(r));
      log([
        `\ndemo done in ${((Date.now() - t0) / 1000).toFixed(0)} s. Files:`,
        `  checkpoint         ${path.join(trainer.outDir, 'last.pth')}`,
        `  Detectron2 weights ${exported.weights}`,
        `  fine-tuning YAML   ${exported.config}`,
        `  metrics            ${path.join(trainer.outDir, 'metrics.jsonl')}`,
        `  TensorBoard        ${path.join(trainer.outDir, 'tb')} (tensorboard --logdir ${trainer.outDir})`,
        `  plots              ${Object.values(plots).join(', ')}`,
        `  retrieval          ${path.join(out, 'retrieval.json')}`,
      ].join('\n'));
    });
}
