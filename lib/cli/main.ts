// The `soco-train` command line: one commander program, one module per command group.
import { Command } from 'commander';
import { registerProposalsCommands } from './proposals';
import { registerViewsCommand } from './views';
import { registerTrainCommands } from './train';
import { registerExportCommand } from './export';

export async function main(argv: string[]): Promise<void> {
  const program = new Command('soco-train')
    .description('SoCo detector pretraining on LibTorch: proposals, views, training, export')
    .showHelpAfterError();
  registerProposalsCommands(program);
  registerViewsCommand(program);
  registerTrainCommands(program);
  registerExportCommand(program);
  await program.parseAsync(argv);
}
