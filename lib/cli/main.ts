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
    .description('SoCo detector pretraining on LibTorch: proposals, views, training, export');
  registerProposalsCommands(program);
  registerViewsCommand(program);
  registerTrainCommands(program);
  registerPlotCommand(program);
  registerEvalRetrievalCommand(program);
  registerDemoCommand(program);
  registerExportCommand(program);
  registerEnvCommand(program);
  hintAfterErrors(program, 'soco-train');
  return program;
}

/** A usage error prints the error and where the help is, not the whole help (train's runs to 80 lines). */
function hintAfterErrors(cmd: Command, name: string): void {
  cmd.showHelpAfterError(`(run \`${name} --help\` for the usage)`);
  for (const sub of cmd.commands) hintAfterErrors(sub, `${name} ${sub.name()}`);
}

export async function main(argv: string[]): Promise<void> {
  await buildProgram().parseAsync(argv);
}
