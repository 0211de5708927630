// `soco-train eval-retrieval`: top-1 proposal retrieval across augmented views of held-out photos.
import { Command, Option } from 'commander';
import * as path from 'path';
import { evalRetrieval, RetrievalResult } from '../train/eval_retrieval';
import { pickDevice } from '../torch';
import { deviceOption, positiveInt } from './options';

export function formatRetrieval(r: RetrievalResult): string {
  const pct = (x: number): string => `${(100 * x).toFixed(1)}%`;
  const cell = (x: number, n: number, q: number): string => `${pct(x)} (${n}/${q})`.padEnd(22);
  const lines = [
    `retrieval on ${r.images} held-out photos: each proposal of a crop view, top-1 among ~${r.gallery.toFixed(0)} proposals of the whole-image views`,
    `               ${'same proposal'.padEnd(22)} ${'same object (IoU>=0.5)'.padEnd(22)} same image`,
    `  chance       ${pct(r.chance).padEnd(22)} ${pct(r.chanceObject).padEnd(22)} ${pct(r.chanceImage)}`,
  ];
  const row = (name: string, s: RetrievalResult['random']): string =>
    `  ${name.padEnd(12)} ${cell(s.top1, s.correct, s.queries)} ${cell(s.top1Object, s.correctObject, s.queries)} ${cell(s.top1Image, s.correctImage, s.queries)}`.trimEnd();
  if (r.pretrained) lines.push(row('pretrained', r.pretrained));
  lines.push(row('random init', r.random));
  return lines.join('\n');
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
    .option('--device <d>', 'where the networks run (auto, cpu, cuda, cuda:N)', deviceOption('--device'), 'cpu')
    .action(async (o: { checkpoint?: string; images: string; proposals: string; rounds: number; k: number; seed: number; bn: 'batch' | 'running'; device: string }) => {
      const r = await evalRetrieval({ ...o, device: pickDevice(o.device), images: path.resolve(o.images), proposals: path.resolve(o.proposals), checkpoint: o.checkpoint && path.resolve(o.checkpoint) });
      console.log(formatRetrieval(r));
    });
}
