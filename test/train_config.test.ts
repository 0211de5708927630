// Training config: paper defaults (RECIPE.md numbers, typed in by hand here), layering, presets,
// JSON/YAML files, and errors that name the key and its source.
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Command } from 'commander';
import * as torch from '../lib/torch';
import { resolveConfig, DEFAULT_CONFIG, ABLATIONS, CONFIG_FIELDS, flagHelp, ConfigError, TrainConfig } from '../lib/train/config';
import { addConfigFlags, overridesFromOptions } from '../lib/cli/train';
import { createBatchSource } from '../lib/train/data_source';
import { SoCoTrainer } from '../lib/train/trainer';
import { listImageFiles } from '../lib/data';
import { readImageSize } from '../lib/data/image';
import { ProposalStoreWriter } from '../lib/data/proposal_store';

const TRAIN = path.resolve(__dirname, '..', '..', 'test', 'fixtures', 'images', 'train');

/** `soco-train train [--preset P] ARGS` as the CLI parses the config flags, resolved. */
function fromFlags(args: string[], presets?: string): TrainConfig {
  const cmd = addConfigFlags(new Command('train').exitOverride());
  cmd.parse(args, { from: 'user' });
  return resolveConfig({ presets, overrides: overridesFromOptions(cmd.opts()) }).config;
}

describe('train config', () => {
  let dir: string;
  before(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'soco-cfg-')); });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('defaults are the paper\'s numbers', () => {
    const c = resolveConfig().config;
    assert.equal(c.arch, 'fpn');
    assert.equal(c.depth, 50);
    assert.equal(c.k, 4);
    assert.equal(c.batchSize, 2048);
    assert.equal(c.epochs, 100);
    assert.equal(c.baseLr, 1.0);
    assert.equal(c.weightDecay, 1e-5);
    assert.equal(c.momentum, 0.9);
    assert.equal(c.trustCoefficient, 0.001);
    assert.equal(c.warmupEpochs, 10);
    assert.equal(c.tau0, 0.99);
    assert.equal(c.v1Size, 224);
    assert.equal(c.v2Size, 224);
    assert.equal(c.v3Size, 112);
    assert.equal(c.v4Size, 192);
    assert.deepEqual(c.cropScale, [0.5, 1]);
    assert.deepEqual(c.levelThresholds, [48, 96, 192]);
    assert.equal(c.jitterProb, 0.5);
    assert.equal(c.jitterRange, 0.1);
    assert.equal(c.projectorHidden, 4096);
    assert.equal(c.embedDim, 256);
    assert.ok(c.fpn && c.head && c.scaleAware && c.jitter && c.multiView && !c.socoStar && !c.poolAllLevels);
    assert.equal(c.proposalSource, 'selective-search');
    assert.equal(c.lossNormalization, 'paper');
  });

  it('layers defaults < presets < file < flags and records where each value came from', () => {
    const file = path.join(dir, 'a.json');
    fs.writeFileSync(file, JSON.stringify({ epochs: 5, 'batch-size': 64, tau0: 0.98, images: 'imgs' }));
    const r = resolveConfig({ presets: 'official', file, overrides: { epochs: '7', depth: '18', warmupEpochs: '1' } });
    assert.equal(r.config.epochs, 7);
    assert.equal(r.origin.epochs, 'flag');
    assert.equal(r.config.batchSize, 64);
    assert.equal(r.origin.batchSize, `file ${file}`);
    assert.equal(r.config.depth, 18);
    assert.equal(r.config.warmupStartFactor, 0.01);
    assert.equal(r.origin.warmupStartFactor, 'preset official');
    assert.equal(r.config.images, path.join(dir, 'imgs'), 'relative paths in a file are relative to the file');
    assert.equal(r.origin.weightDecay, 'default');
  });

  it('presets compose in order: official, c4 and soco-star', () => {
    const off = resolveConfig({ presets: 'official' }).config;
    assert.ok(off.cropFromRaw && off.keepClipped && off.poolAllLevels);
    assert.equal(off.viewLayout, 'official');
    assert.equal(off.minLr, 1e-6);
    assert.equal(off.lossNormalization, 'authors');
    const c4 = resolveConfig({ presets: ['c4'] }).config;
    assert.equal(c4.arch, 'c4');
    assert.ok(!c4.multiView && !c4.jitter);
    assert.deepEqual(c4.cropScale, [0.5, 1]);
    // The authors' C4 crops at scale [0.6, 1], whichever order the two presets come in.
    assert.deepEqual(resolveConfig({ presets: 'c4,official' }).config.cropScale, [0.6, 1]);
    assert.deepEqual(resolveConfig({ presets: 'official,c4' }).config.cropScale, [0.6, 1]);
    assert.equal(resolveConfig({ presets: 'official,c4' }).config.poolAllLevels, false);
    const star = resolveConfig({ presets: 'soco-star' }).config;
    assert.ok(star.socoStar);
    assert.equal(star.epochs, 400);
  });

  it('reads YAML (kebab or camel keys) and JSON', () => {
    const y = path.join(dir, 'b.yaml');
    fs.writeFileSync(y, 'arch: fpn\nv3-size: 96\nscaleAware: false\ncropScale: [0.4, 1]\nresume: never\n');
    const c = resolveConfig({ file: y }).config;
    assert.equal(c.v3Size, 96);
    assert.equal(c.scaleAware, false);
    assert.deepEqual(c.cropScale, [0.4, 1]);
    assert.equal(c.resume, 'never');
  });

  it('arch c4 from a flag or a file brings the c4 view layout for the keys the user left unset, as --preset c4', () => {
    const layout = (c: TrainConfig): unknown[] => [c.arch, c.multiView, c.jitter, c.socoStar, c.poolAllLevels, c.cropScale];
    const flag = resolveConfig({ overrides: { arch: 'c4' } });
    assert.deepEqual(layout(flag.config), layout(resolveConfig({ presets: 'c4' }).config));
    assert.equal(flag.origin.multiView, 'arch c4');
    assert.equal(flag.origin.arch, 'flag');
    // With the authors' preset: the same as --preset official,c4 (their C4 crop scale, no all-level pooling).
    assert.deepEqual(layout(resolveConfig({ presets: 'official', overrides: { arch: 'c4' } }).config), layout(resolveConfig({ presets: 'official,c4' }).config));
    const file = path.join(dir, 'c4.yaml');
    fs.writeFileSync(file, 'arch: c4\njitter: true\n');
    const fromFile = resolveConfig({ file });
    assert.deepEqual(layout(fromFile.config), ['c4', false, true, false, false, [0.5, 1]], 'the file\'s own jitter stays');
    assert.equal(fromFile.origin.jitter, `file ${file}`);
    assert.equal(resolveConfig({ overrides: { arch: 'c4', jitter: 'true' } }).config.jitter, true, 'a flag stays');
  });

  it('errors name the key, the expected type and the source', () => {
    const bad = path.join(dir, 'bad.json');
    fs.writeFileSync(bad, JSON.stringify({ batchSize: 'big' }));
    assert.throws(() => resolveConfig({ file: bad }), (e: Error) => e instanceof ConfigError && /config file .*bad\.json: batchSize must be an integer, got "big"/.test(e.message));
    fs.writeFileSync(bad, JSON.stringify({ batchsize: 3 }));
    assert.throws(() => resolveConfig({ file: bad }), /unknown key 'batchsize'/);
    fs.writeFileSync(bad, '{ not json');
    assert.throws(() => resolveConfig({ file: bad }), /invalid JSON/);
    assert.throws(() => resolveConfig({ file: path.join(dir, 'missing.json') }), /missing\.json: cannot read it \(ENOENT\)/);
    assert.throws(() => resolveConfig({ overrides: { depth: '42' } }), /flag --depth: depth must be one of 18, 34, 50, 101, got "42"/);
    assert.throws(() => resolveConfig({ overrides: { tau0: '1.5' } }), /flag --tau0: tau0 must be in \[0, 1\], got 1.5/);
    assert.throws(() => resolveConfig({ overrides: { cropScale: '0.5' } }), /flag --crop-scale: cropScale must be two numbers/);
    assert.throws(() => resolveConfig({ presets: 'offical' }), /unknown preset 'offical' \(known: paper, official, soco-star, c4\)/);
    assert.throws(() => resolveConfig({ overrides: { arch: 'c4', multiView: true } }), /arch c4 uses views V1 and V2 only: multiView must be false/);
    assert.throws(() => resolveConfig({ presets: 'c4', overrides: { socoStar: true } }), /arch c4 uses views V1 and V2 only: socoStar must be false/);
    assert.throws(() => resolveConfig({ overrides: { warmupEpochs: 20, epochs: 10 } }), /warmupEpochs \(20\) exceeds epochs \(10\)/);
  });

  it('every ablation of Tables 4 and 5 is a valid config', () => {
    for (const [name, a] of Object.entries(ABLATIONS)) assert.doesNotThrow(() => resolveConfig({ overrides: a }), name);
    // Table 5 (a, b, d) are plain keys.
    assert.equal(resolveConfig({ overrides: { v3Size: 192, batchSize: 512, tau0: 0.98, k: 8 } }).config.v3Size, 192);
  });

  it('every key is a flag with its default in the help', () => {
    const help = flagHelp();
    assert.equal(help.length, Object.keys(DEFAULT_CONFIG).length);
    assert.equal(Object.keys(CONFIG_FIELDS).length, Object.keys(DEFAULT_CONFIG).length);
    assert.ok(help.some((h) => h.flag === '--batch-size' && /default 2048/.test(h.help)));
    assert.ok(help.some((h) => h.flag === '--v3-size' && /Table 5\(a\)/.test(h.help)));
  });

  describe('every ablation starts: flags -> config -> the data pipeline', function () {
    this.timeout(600000);
    let store: string;
    before(async () => {
      // Real store format, three hand-placed boxes per photo.
      store = path.join(dir, 'train.proposals');
      const w = ProposalStoreWriter.open(store, { root: TRAIN });
      for (const key of listImageFiles(TRAIN)) {
        const { width: W, height: H } = await readImageSize(path.join(TRAIN, key));
        const f = (a: number, b: number, c: number, d: number): number[] => [Math.round(a * W), Math.round(b * H), Math.round(c * W), Math.round(d * H)];
        w.append(key, { boxes: [...f(0.1, 0.1, 0.6, 0.6), ...f(0.3, 0.2, 0.9, 0.8), ...f(0.2, 0.4, 0.7, 0.95)], width: W, height: H, rawCount: 3, uniqueCount: 3, filterStage: 0, millis: 0 });
      }
      w.close();
    });
    const small = ['--v1-size', '64', '--v2-size', '64', '--v3-size', '32', '--v4-size', '48', '--batch-size', '2'];

    /** One batch of the configured pipeline: view sizes and loss pairs. */
    async function firstBatch(c: TrainConfig): Promise<{ sizes: number[]; pairs: string[] }> {
      const src = await createBatchSource(c, 'cpu', () => undefined);
      try {
        const it = src.epoch(0, 0);
        const r = await it.next();
        assert.ok(!r.done);
        const b = r.value;
        const out = { sizes: b.views.map((v) => v.image.size(3)), pairs: b.pairs.map((p) => p.name) };
        b.dispose();
        await it.return?.();
        return out;
      } finally {
        await src.close();
      }
    }

    it('--multi-view false, --proposal-source random, view sizes, SoCo* sizes', async () => {
      const base = ['--images', TRAIN, '--proposals', store, ...small];
      assert.deepEqual(await firstBatch(fromFlags([...base, '--multi-view', 'false'])), { sizes: [64, 64], pairs: ['v1-v2'] });
      assert.deepEqual((await firstBatch(fromFlags([...base, '--no-multi-view']))).pairs, ['v1-v2']);
      assert.deepEqual(await firstBatch(fromFlags([...base, '--v2-size', '56', '--v3-size', '40'])), { sizes: [64, 56, 40], pairs: ['v1-v2', 'v1-v3'] });
      assert.deepEqual((await firstBatch(fromFlags([...base, '--soco-star']))).sizes, [64, 64, 32, 48]);
      // The authors' pipeline gives V1 a box set per pair it was drawn for: V1-V2 (also V1-V4) and V1-V3.
      assert.deepEqual(await firstBatch(fromFlags(base, 'official,soco-star')), { sizes: [64, 64, 64, 48, 32], pairs: ['v1-v2', 'v1-v3', 'v1-v4'] });
      // Random boxes need no proposal store.
      const rnd = fromFlags(['--images', TRAIN, ...small, '--proposal-source', 'random', '--k', '1']);
      assert.equal(rnd.proposals, '');
      assert.deepEqual((await firstBatch(rnd)).sizes, [64, 64, 32]);
      assert.throws(() => fromFlags([...base, '--soco-star', '--no-multi-view']), /socoStar adds V4 to V1, V2 and V3: it needs multiView true/);
    });

    it('each entry of ABLATIONS gives batches', async () => {
      for (const [name, a] of Object.entries(ABLATIONS)) {
        const c = resolveConfig({ overrides: { ...a, images: TRAIN, proposals: store, v1Size: 64, v2Size: 64, v3Size: 32, batchSize: 2 } }).config;
        const b = await firstBatch(c);
        assert.equal(b.sizes.length, c.multiView ? 3 : 2, name);
      }
    });

    it('a run without V3, with random boxes and small views, trains (one iteration)', async () => {
      const threads = torch.getNumThreads();
      torch.setNumThreads(1);
      try {
        const c = fromFlags(['--images', TRAIN, '--out', path.join(dir, 'run'), '--multi-view', 'false', '--proposal-source', 'random', '--k', '1',
          '--v1-size', '64', '--v2-size', '48', '--batch-size', '2', '--depth', '18', '--no-head', '--projector-hidden', '32',
          '--predictor-hidden', '32', '--embed-dim', '16', '--max-iters', '1', '--epochs', '1', '--warmup-epochs', '0', '--log-every', '1', '--prefetch', '1']);
        const trainer = new SoCoTrainer(c);
        const losses: number[] = [];
        trainer.on('iteration', (e: { loss: number }) => losses.push(e.loss));
        try {
          await trainer.train();
        } finally {
          await trainer.close();
        }
        assert.equal(losses.length, 1);
        // One pair (V1-V2), both directions: -4 <= loss <= 4.
        assert.ok(losses[0] >= -4 && losses[0] <= 4, `loss ${losses[0]}`);
      } finally {
        torch.setNumThreads(threads);
      }
    });
  });
});
