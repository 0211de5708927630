// The `soco-train` command line: one commander program, one module per command group.
import { Command } from 'commander';
import { registerProposalsCommands } from './proposals';
import { registerViewsCommand } from './views';
import { registerTrainCommands } from './train';
import { registerExportCommand } from './export';
import { registerPlotCommand } from './plot';
import { registerEvalRetrievalCommand } from './eval_retrieval';
import { registerDemoCommand } from './demo';
import { registerEnvCommand } from './env';

/** The whole program, every command registered (main() parses argv with it). */
export function buildProgram(): Command {
  const program = new Command('soco-train')
    .description('SoCo detector pretraining on LibTorch: proposals, views, training, export')
    .showHelpAfterError();
  registerProposalsCommands(program);
  registerViewsCommand(program);
  registerTrainCommands(program);
  registerPlotCommand(program);
  registerEvalRetrievalCommand(program);
  registerDemoCommand(program);
  registerExportCommand(program);
  registerEnvCommand(program);
  return program;
}

export async function main(argv: string[]): Promise<void> {
  await buildProgram().parseAsync(argv);
}
