import * as assert from 'assert';
import * as fs from 'fs';
import * as path from 'path';

const root = path.resolve(__dirname, '..', '..');

describe('build files', () => {
  it('CMakeLists.txt and binding.gyp compile the same sources', () => {
    const cmake = fs.readFileSync(path.join(root, 'CMakeLists.txt'), 'utf8');
    const block = /set\(SOCO_SOURCES([^)]*)\)/.exec(cmake);
    assert.ok(block, 'SOCO_SOURCES not found in CMakeLists.txt');
    const fromCmake = block[1].split(/\s+/).filter((s) => s.endsWith('.cc')).sort();
    const gyp = fs.readFileSync(path.join(root, 'binding.gyp'), 'utf8').replace(/^\s*#.*$/gm, '');
    const fromGyp = (JSON.parse(gyp).targets[0].sources as string[]).slice().sort();
    assert.deepStrictEqual(fromGyp, fromCmake);
    for (const f of fromCmake) assert.ok(fs.existsSync(path.join(root, f)), `${f} is listed but missing`);
    const onDisk = fs.readdirSync(path.join(root, 'native')).filter((f) => f.endsWith('.cc')).map((f) => `native/${f}`).sort();
    assert.deepStrictEqual(onDisk, fromCmake, 'every native/*.cc must be built');
  });
});
