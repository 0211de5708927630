// A stand-alone launcher process for the interrupt test (the test sends it SIGINT, as a terminal's
// Ctrl-C would): node dist-launcher.js <nproc> <script> [args...]
import { launch } from '../lib/dist';

const [nproc, script, ...args] = process.argv.slice(2);
launch({ nprocPerNode: Number(nproc), script, args }).then(
  (r) => process.exit(r.exitCode),
  (err: Error) => { console.error(err.stack ?? String(err)); process.exit(1); },
);
