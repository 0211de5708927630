// Misuse of the tensor API must surface as JS Errors (TorchError naming the op, and the argument
// where there is one), never as a crash: the battery (test/torch_errors_cases.ts) runs in a
// child process that has to survive it and exit 0.
import { strict as assert } from 'assert';
import { spawnSync } from 'child_process';
import * as path from 'path';
import { errorCases } from './torch_errors_cases';

interface Outcome { name: string; threw: boolean; cls?: string; op?: string; message?: string }
interface Report {
  outcomes: Outcome[];
  asyncError: string;
  asyncLeak: number;
  fuzz: { calls: number; errors: number; nonErrors: string[] };
  sanity: number;
  unhandled: string[];
}

describe('torch errors (in a child process)', function () {
  this.timeout(120000);
  let status: number | null = null;
  let signal: NodeJS.Signals | null = null;
  let stderr = '';
  let report: Report | undefined;
  const byName = new Map<string, Outcome>();

  before(() => {
    const r = spawnSync(process.execPath, [path.join(__dirname, 'torch_errors_child.js')], { encoding: 'utf8', timeout: 100000, maxBuffer: 1 << 24 });
    status = r.status;
    signal = r.signal;
    stderr = r.stderr;
    if (r.status === 0) {
      report = JSON.parse(r.stdout) as Report;
      for (const o of report.outcomes) byName.set(o.name, o);
    }
  });

  it('the child survives the whole battery and exits 0', () => {
    assert.equal(signal, null, `child killed by ${signal}\n${stderr}`);
    assert.equal(status, 0, `child exited ${status}\n${stderr}`);
    assert.deepEqual(report!.unhandled, []);
  });

  for (const c of errorCases) {
    it(c.name, () => {
      const o = byName.get(c.name);
      assert.ok(o, 'no outcome reported (did the child die?)');
      assert.ok(o.threw, 'did not throw');
      assert.equal(o.cls, c.cls ?? 'TorchError', `threw ${o.cls}: ${o.message}`);
      if (typeof c.op === 'string') assert.equal(o.op, c.op, o.message);
      else if (c.op) assert.match(o.op ?? '', c.op, o.message);
      if (o.cls === 'TorchError') assert.ok(o.message!.startsWith(`${o.op}: `), `message should start with the op: ${o.message}`);
      if (c.msg) assert.match(o.message!, c.msg);
    });
  }

  it('messages name the op and the argument', () => {
    assert.equal(byName.get('an op on a disposed tensor names the argument')!.message, "aten::add.Scalar: argument 'self' is a disposed tensor");
    assert.equal(byName.get('a string where a scalar is expected')!.message, "aten::add.Scalar: argument 'other' expects Scalar, got string");
    assert.match(byName.get('a fractional index')!.message!, /^aten::narrow: argument 'start' expects (SymInt|int), got the number 0\.5$/);
    // LibTorch's dispatch-key listing is cut to its first sentence.
    const cuda = byName.get('LibTorch asked for a CUDA tensor directly')!.message!;
    assert.ok(cuda.length < 400 && !cuda.includes('BackendSelect'), cuda);
  });

  it('an async tidy that rejects passes the error on and frees its tensors', () => {
    assert.match(report!.asyncError, /^TorchError: aten::matmul: /);
    assert.equal(report!.asyncLeak, 0);
  });

  it('raw bindings fed garbage only ever throw Errors, and the addon still computes', () => {
    assert.deepEqual(report!.fuzz.nonErrors, []);
    assert.ok(report!.fuzz.errors > report!.fuzz.calls / 2, `${report!.fuzz.errors} of ${report!.fuzz.calls} garbage calls threw`);
    assert.equal(report!.sanity, 4);
  });
});

describe('addon load errors', () => {
  // The loader's messages as Node prints them when dlopen fails; each gets one fix.
  it('name what is missing and the command that fixes it', async () => {
    const { explainLoadError } = await import('../lib/torch/native');
    const cases: [string, RegExp][] = [
      ['No native build was found for platform=linux arch=x64', /addon is not built\. Fix: run `bash .*scripts\/setup\.sh`/],
      ["Cannot find module '/src/build-torch2/Release/soco_train.node'", /no addon is built in \/src\/build-torch2 \(SOCO_BUILD_DIR\).*scripts\/torch2\.sh/],
      ['libtorch_cpu.so: cannot open shared object file: No such file or directory', /LibTorch is missing \(libtorch_cpu\.so not found\)/],
      ['libdeflate.so.0: cannot open shared object file: No such file or directory', /image library is missing \(libdeflate\.so\.0 not found\).*libdeflate-dev/],
      ['libjpeg.so.62: cannot open shared object file: No such file or directory', /image library is missing \(libjpeg\.so\.62 not found\)/],
      ['soco_train.node: undefined symbol: _ZN2at4_ops3add4callE', /built against a different LibTorch.*npm run build:native/],
    ];
    for (const [msg, re] of cases) assert.match(explainLoadError(new Error(msg)), re, msg);
  });
});
