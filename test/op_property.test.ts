// Property: no argument value kills the process. Every operator the facade exposes gets extreme and
// random values for each argument (huge, negative, NaN, infinite, fractional, empty, wrong dtype,
// wrong shape, wrong JS type; test/op_property_child.ts), and the addon's other bindings garbage,
// in a child process; the child must end by itself with exit code 0, every failure an Error. The
// seed changes every run (SOCO_PROPERTY_SEED repeats one); a death names the call.
import { strict as assert } from 'assert';
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

interface Report { ops: number; calls: number; errors: number; ok: number; nonErrors: string[]; refused: string[]; seed: number; other: number; sanity: number }

describe('operator arguments (property, in a child process)', function () {
  this.timeout(600000);

  it('no value of any argument of any exposed op kills the process; each failure is an Error', () => {
    const seed = Number(process.env.SOCO_PROPERTY_SEED ?? Math.floor(Math.random() * 2 ** 31));
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'soco-prop-'));
    const progress = path.join(dir, 'progress');
    try {
      // Address space capped: a value that made an op allocate more than the host holds would
      // otherwise wake the OOM killer, which may pick another process of this shared machine.
      const child = [process.execPath, path.join(__dirname, 'op_property_child.js'), progress, String(seed)];
      const argv = fs.existsSync('/usr/bin/prlimit') ? ['/usr/bin/prlimit', `--as=${12 * 2 ** 30}`, ...child] : child;
      const r = spawnSync(argv[0], argv.slice(1), { encoding: 'utf8', timeout: 500000, maxBuffer: 1 << 26 });
      const last = fs.existsSync(progress) ? fs.readFileSync(progress, 'utf8') : '(nothing)';
      const tail = r.stderr.split('\n').filter((l) => !/Warning:/.test(l)).slice(-5).join('\n');
      assert.equal(r.signal, null, `seed ${seed}: the child died by ${r.signal} in ${last}\n${tail}`);
      assert.equal(r.status, 0, `seed ${seed}: the child exited ${r.status} after ${last}\n${tail}`);
      const rep = JSON.parse(r.stdout) as Report;
      assert.deepEqual(rep.nonErrors, []);
      assert.deepEqual(rep.refused, [], 'every exposed op resolves');
      assert.ok(rep.ops >= 150, `${rep.ops} ops`);
      assert.ok(rep.errors > rep.calls / 2 && rep.ok > 1000, `${rep.ok} calls succeeded, ${rep.errors} threw, of ${rep.calls}`);
      assert.ok(rep.other >= 250, `${rep.other} calls of the other bindings`);
      assert.equal(rep.sanity, 4, 'the addon still computes');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
