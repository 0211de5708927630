// `soco-train plot --run DIR`: the run's loss, lr, tau, throughput and embedding-std curves as PNG.
import { Command } from 'commander';
import * as fs from 'fs';
import * as path from 'path';
import { plotRun } from '../train/plot';

export function registerPlotCommand(program: Command): void {
  program.command('plot')
    .description('draw loss, lr, tau, throughput and embedding-std curves of a training run to PNG')
    .requiredOption('--run <dir>', 'run folder (the --out of soco-train train)')
    .option('--out <dir>', 'where to write the PNGs (default RUN/plots)')
    .action((o: { run: string; out?: string }) => {
      const run = path.resolve(o.run);
      if (!fs.existsSync(run) || !fs.statSync(run).isDirectory()) throw new Error(`--run ${o.run}: no such folder`);
      const files = plotRun(run, o.out ? path.resolve(o.out) : undefined);
      for (const [name, f] of Object.entries(files)) console.log(`${name.padEnd(13)} ${f}`);
    });
}
