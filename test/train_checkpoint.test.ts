// Checkpoint files: keep-N rotation, last.pth always the newest, a failed write leaves the
// previous checkpoint intact, and the early checks on the output folder.
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { CheckpointSaver, checkFreeSpace, LAST } from '../lib/train/checkpoint';

/** A writer in the same contract as lib/torch's save(): temp file then rename. */
const writer = (content: string) => (file: string): void => {
  const tmp = `${file}.tmp`;
  fs.writeFileSync(tmp, content);
  fs.renameSync(tmp, file);
};

describe('train checkpoint files', () => {
  let dir: string;
  beforeEach(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'soco-ckpt-')); });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('keeps the newest N numbered checkpoints and points last.pth at the newest', () => {
    const s = new CheckpointSaver(dir, 2);
    for (const step of [10, 20, 30, 40]) {
      const saved = s.save(step, writer(`step ${step}`));
      assert.equal(saved.step, step);
      assert.equal(fs.readFileSync(s.lastPath, 'utf8'), `step ${step}`);
    }
    assert.deepEqual(s.list().map((c) => c.step), [30, 40]);
    assert.deepEqual(fs.readdirSync(dir).sort(), ['checkpoint-00000030.pth', 'checkpoint-00000040.pth', LAST]);
  });

  it('a failing write (disk full, killed) changes nothing: last.pth and older checkpoints intact', () => {
    const s = new CheckpointSaver(dir, 1);
    s.save(5, writer('good'));
    assert.throws(() => s.save(6, () => { throw new Error('ENOSPC: no space left on device'); }), /ENOSPC/);
    assert.equal(fs.readFileSync(s.lastPath, 'utf8'), 'good');
    assert.deepEqual(s.list().map((c) => c.step), [5]);
  });

  it('last.pth survives the rotation of the numbered file it was linked from', () => {
    const s = new CheckpointSaver(dir, 1);
    s.save(1, writer('one'));
    s.save(2, writer('two'));
    assert.equal(fs.readFileSync(s.lastPath, 'utf8'), 'two');
    assert.ok(!fs.existsSync(s.pathFor(1)));
  });

  it('early folder checks name the folder and the fix', () => {
    assert.throws(() => checkFreeSpace(dir, 2 ** 60), /GiB free, a checkpoint needs about .* GiB: free some space or choose another --out/);
    assert.ok(checkFreeSpace(dir, 1) > 0);
    assert.throws(() => new CheckpointSaver(dir, 0), /keep must be a positive integer/);
  });
});
