// lib/distributed in one process: environment parsing (torchrun, Slurm), and on a one-rank Gloo group
// the SyncBatchNorm function against LibTorch's batch_norm, the gradient reducer's bucketing and
// hooks, and the SyncBatchNorm module swap. The multi-process behaviour is in dist-launch.test.ts
// and dist-train.test.ts.
import { strict as assert } from 'assert';
import * as torch from '../lib/torch';
import { Tensor, tidy } from '../lib/torch';
import { BatchNorm1d, BatchNorm2d, Conv2d, Module, Sequential } from '../lib/nn';
import * as dist from '../lib/distributed';
import { describeIf, noNccl } from './requires';

const maxDiff = (a: Tensor, b: Tensor): number => tidy(() => a.sub(b).abs().max().item());
/** sum_i (i + 1) * |p_i|^2 over the parameters not in `skip`: gradient 2 (i + 1) p_i. */
const lossOf = (ps: Tensor[], skip: number[] = []): Tensor =>
  ps.map((p, i) => (skip.includes(i) ? null : p.mul(p).mul(i + 1).sum())).filter((t): t is Tensor => t !== null).reduce((a, b) => a.add(b));

describe('dist: environment', () => {
  it('reads torchrun variables and names what is missing or malformed', () => {
    const e = dist.readDistEnv({ RANK: '3', WORLD_SIZE: '8', LOCAL_RANK: '1', LOCAL_WORLD_SIZE: '2', GROUP_RANK: '1', MASTER_ADDR: 'n0', MASTER_PORT: '29500' });
    assert.deepEqual(e, { rank: 3, worldSize: 8, localRank: 1, localWorldSize: 2, nodeRank: 1, masterAddr: 'n0', masterPort: 29500, source: 'torchrun' });
    assert.equal(dist.readDistEnv({}), null);
    assert.throws(() => dist.readDistEnv({ RANK: '0', WORLD_SIZE: '2', MASTER_PORT: '1' }), /MASTER_ADDR is not set/);
    assert.throws(() => dist.readDistEnv({ RANK: '2', WORLD_SIZE: '2', MASTER_ADDR: 'a', MASTER_PORT: '1' }), /RANK must be <= 1, got 2/);
    assert.throws(() => dist.readDistEnv({ RANK: 'x', WORLD_SIZE: '2', MASTER_ADDR: 'a', MASTER_PORT: '1' }), /RANK must be an integer, got 'x'/);
    assert.throws(() => dist.readDistEnv({ RANK: '0', WORLD_SIZE: '2', MASTER_ADDR: 'a' }), /MASTER_PORT is not set/);
  });

  it('expands Slurm node lists as Slurm does', () => {
    assert.deepEqual(dist.expandNodelist('gpu[01-03,07],login1'), ['gpu01', 'gpu02', 'gpu03', 'gpu07', 'login1']);
    assert.deepEqual(dist.expandNodelist('rack[1-2]-n[3-4]'), ['rack1-n3', 'rack1-n4', 'rack2-n3', 'rack2-n4']);
    assert.deepEqual(dist.expandNodelist('node9'), ['node9']);
    assert.deepEqual(dist.expandNodelist('a[098-101]'), ['a098', 'a099', 'a100', 'a101']);
    assert.throws(() => dist.expandNodelist('gpu[01-03'), /malformed Slurm nodelist/);
    assert.throws(() => dist.expandNodelist('gpu[3-1]'), /descending range/);
    assert.equal(dist.tasksOnNode('4(x2),3', 0), 4);
    assert.equal(dist.tasksOnNode('4(x2),3', 1), 4);
    assert.equal(dist.tasksOnNode('4(x2),3', 2), 3);
    assert.throws(() => dist.tasksOnNode('4(x2)', 2), /no entry for node 2/);
  });

  it('reads Slurm task variables: master from the node list, port from the job id', () => {
    const base = { SLURM_PROCID: '5', SLURM_NTASKS: '8', SLURM_LOCALID: '1', SLURM_NODEID: '1', SLURM_TASKS_PER_NODE: '4(x2)', SLURM_JOB_NODELIST: 'gpu[07-08]', SLURM_JOB_ID: '123456' };
    assert.deepEqual(dist.readDistEnv(base), { rank: 5, worldSize: 8, localRank: 1, localWorldSize: 4, nodeRank: 1, masterAddr: 'gpu07', masterPort: 20000 + (123456 % 20000), source: 'slurm' });
    // MASTER_ADDR/PORT given explicitly win; torchrun variables win over Slurm's (our launcher under srun).
    assert.equal(dist.readDistEnv({ ...base, MASTER_ADDR: 'head', MASTER_PORT: '4000' })!.masterAddr, 'head');
    assert.equal(dist.readDistEnv({ ...base, RANK: '0', WORLD_SIZE: '2', MASTER_ADDR: 'x', MASTER_PORT: '9' })!.source, 'torchrun');
    // One task (sbatch without srun): not a multi-process job.
    assert.equal(dist.readDistEnv({ SLURM_PROCID: '0', SLURM_NTASKS: '1' }), null);
    assert.throws(() => dist.readDistEnv({ ...base, SLURM_JOB_NODELIST: undefined }), /SLURM_JOB_NODELIST/);
  });

  it('turns CLI flags into launch options and rejects node flags without --nproc-per-node', () => {
    assert.equal(dist.launchOptionsFrom({}), null);
    assert.deepEqual(dist.launchOptionsFrom({ nprocPerNode: 8, nnodes: 2, nodeRank: 1, masterAddr: 'h', masterPort: 5 }),
      { nprocPerNode: 8, nnodes: 2, nodeRank: 1, masterAddr: 'h', masterPort: 5 });
    assert.throws(() => dist.launchOptionsFrom({ nnodes: 2 }), /need --nproc-per-node/);
  });

  it('needs --master-addr for several nodes', async () => {
    await assert.rejects(dist.launch({ nprocPerNode: 1, nnodes: 2, nodeRank: 0, script: __filename, handleSignals: false }), /masterAddr \(--master-addr\) is required/);
    await assert.rejects(dist.launch({ nprocPerNode: 0, script: __filename }), /nprocPerNode must be an integer/);
  });
});

describe('dist: one-rank Gloo group', function () {
  this.timeout(60000);
  let group: dist.ProcessGroup;
  let store: dist.TCPStore;

  before(async () => {
    store = await dist.TCPStore.create({ host: '127.0.0.1', port: 0, worldSize: 1, isServer: true, timeoutMs: 20000 });
    assert.ok(store.port > 0);
    group = await dist.ProcessGroup.create({ store, rank: 0, size: 1, backend: 'gloo', timeoutMs: 20000 });
  });
  after(() => group?.destroy());

  it('rejects bad arguments with errors that name them', async () => {
    await assert.rejects(group.allReduce(torch.tensor([1]), 'mean' as dist.ReduceOp), /op must be 'sum', 'avg', 'max' or 'min', got 'mean'/);
    await assert.rejects(async () => group.broadcast(torch.tensor([1]), 1), /src must be an integer in \[0, 0\]/);
    await assert.rejects(async () => group.barrier({ timeoutMs: -5 }), /timeoutMs must be a positive number/);
    await assert.rejects(dist.ProcessGroup.create({ store, rank: 1, size: 1, backend: 'gloo' }), /rank must be an integer in \[0, 0\], got 1/);
    if (!dist.availableBackends().nccl)
      await assert.rejects(dist.ProcessGroup.create({ store, rank: 0, size: 1, backend: 'nccl' }), /NCCL backend needs soco-train built against a CUDA LibTorch/);
    const x = torch.randn([2, 3, 4, 4]);
    assert.throws(() => dist.syncBatchNorm(group, x, null, null, torch.ones([4]), null), /weight must have shape \[3\]/);
    assert.throws(() => dist.syncBatchNorm(group, torch.ones([3]), null, null, null, null), /input must have at least 2 dims/);
    assert.throws(() => dist.syncBatchNorm(group, torch.ones([1, 3]), null, null, null, null), /expected more than 1 value per channel when training, got 1 over all ranks/);
  });

  for (const shape of [[6, 3, 5, 4], [10, 7], [4, 2, 9]]) {
    it(`SyncBatchNorm function = LibTorch batch_norm on [${shape}]: output, gradients, running stats`, () => {
      tidy(() => {
        torch.manualSeed(11);
        const c = shape[1];
        // An offset mean (5) and scale (3) check the statistics are not computed by cancellation.
        const x0 = torch.randn(shape).mul(3).add(5);
        const wt = torch.rand([c]).add(0.5);
        const bs = torch.randn([c]);
        const gy = torch.randn(shape);
        const run = (sync: boolean): Tensor[] => {
          const x = x0.clone().requiresGrad_(true);
          const w = wt.clone().requiresGrad_(true);
          const b = bs.clone().requiresGrad_(true);
          const rm = torch.full([c], 0.5);
          const rv = torch.full([c], 2);
          const y = sync ? dist.syncBatchNorm(group, x, rm, rv, w, b, 0.3, 1e-3) : torch.batchNorm(x, rm, rv, w, b, true, 0.3, 1e-3);
          y.backward(gy);
          return [y, x.grad!, w.grad!, b.grad!, rm, rv];
        };
        const ours = run(true);
        const ref = run(false);
        const names = ['output', 'input grad', 'weight grad', 'bias grad', 'running mean', 'running var'];
        ours.forEach((t, i) => assert.ok(maxDiff(t, ref[i]) < 2e-5, `${names[i]} differs by ${maxDiff(t, ref[i])}`));
      });
    });
  }

  it('SyncBatchNorm function without affine parameters or running statistics, and under noGrad', () => {
    tidy(() => {
      const x = torch.randn([5, 4, 3, 3]);
      assert.ok(maxDiff(dist.syncBatchNorm(group, x, null, null, null, null), torch.batchNorm(x, null, null, null, null, true)) < 2e-5);
      const rm = torch.zeros([4]);
      const rv = torch.ones([4]);
      const y = torch.noGrad(() => dist.syncBatchNorm(group, x, rm, rv, null, null, 0.1));
      assert.equal(y.requiresGrad, false);
      assert.ok(maxDiff(rm, x.mean([0, 2, 3]).mul(0.1)) < 1e-6);
      // Weight only, bias only: each gradient lands on its own input.
      for (const which of ['weight', 'bias'] as const) {
        const pv = which === 'weight' ? torch.rand([4]).add(0.5) : torch.randn([4]);
        const grads = [true, false].map((sync) => {
          const p = pv.clone().requiresGrad_(true);
          const xi = x.clone().requiresGrad_(true);
          const [w, b] = which === 'weight' ? [p, null] : [null, p];
          const y = sync ? dist.syncBatchNorm(group, xi, null, null, w, b) : torch.batchNorm(xi, null, null, w, b, true);
          y.mul(y).mul(torch.arange(0, 180).view(5, 4, 3, 3).div(100)).sum().backward();
          return [p.grad!, xi.grad!];
        });
        grads[0].forEach((g, i) => assert.ok(maxDiff(g, grads[1][i]) < 2e-5, `${which} only: gradient ${i}`));
      }
    });
  });

  it('allReduce/broadcast/allGather/barrier on one rank, and TCPStore keys', async () => {
    const x = torch.tensor([1, -2, 3]);
    await group.allReduce(x, 'avg');
    assert.deepEqual(x.toArray(), [1, -2, 3]);
    await group.broadcast(x, 0);
    const parts = await group.allGather(x);
    assert.equal(parts.length, 1);
    assert.deepEqual(parts[0].toArray(), [1, -2, 3]);
    assert.notEqual(parts[0].id, x.id);
    await group.barrier();
    await store.set('k', 'v');
    assert.equal((await store.get('k', 1000)).toString(), 'v');
    assert.equal(await store.add('n', 2), 2);
    assert.equal(await store.add('n', 3), 5);
    await assert.rejects(store.get('never-set', 300), /key 'never-set' did not appear within 300 ms/);
  });

  /** A leaf per shape, and a loss that uses all but `unused` of them. */
  function leaves(shapes: number[][]): Tensor[] {
    torch.manualSeed(3);
    return shapes.map((s) => torch.randn(s).requiresGrad_(true));
  }

  it('GradientReducer: buckets in reverse order under the cap; hooks start buckets during backward', async () => {
    const ps = leaves([[300], [200], [10, 10], [50], [3, 3, 3]]);
    const r = new dist.GradientReducer(group, ps, { bucketCapMb: 1000 / (1024 * 1024) }); // 1000 bytes
    // Reverse order; a bucket closes once it reaches 1000 bytes (250 floats).
    assert.deepEqual(r.buckets, [[4, 3, 2, 1], [0]]);
    r.prepare();
    tidy(() => lossOf(ps).backward());
    const stats = await r.finish();
    assert.deepEqual(stats, { buckets: 2, overlapped: 2 });
    ps.forEach((p, i) => assert.ok(maxDiff(p.grad!, p.mul(2 * (i + 1))) < 1e-5, `grad ${i}`));
    // Without prepare(): the same averages, all started in finish().
    ps.forEach((p) => p.clearGrad());
    tidy(() => lossOf(ps).backward());
    assert.deepEqual(await r.finish(), { buckets: 2, overlapped: 0 });
    ps.forEach((p, i) => assert.ok(maxDiff(p.grad!, p.mul(2 * (i + 1))) < 1e-5, `grad ${i}`));
    r.dispose();
    assert.throws(() => r.prepare(), /disposed/);
  });

  it('GradientReducer: prepare(roots) finds the parameters backward will not reach, so later buckets still overlap', async () => {
    const ps = leaves([[10], [10], [10], [10], [10]]);
    const r = new dist.GradientReducer(group, ps, { bucketCapMb: 1 / (1024 * 1024) }); // one parameter per bucket
    assert.deepEqual(r.buckets, [[4], [3], [2], [1], [0]]);
    // Parameter 2 gets no gradient: without roots its bucket, and those after it, wait for finish().
    r.prepare();
    tidy(() => lossOf(ps, [2]).backward());
    assert.deepEqual(await r.finish(), { buckets: 5, overlapped: 2 });
    ps.forEach((p) => p.clearGrad());
    await tidy(async () => {
      const loss = lossOf(ps, [2]);
      r.prepare(1, [loss]);
      loss.backward();
      assert.deepEqual(await r.finish(), { buckets: 5, overlapped: 5 });
    });
    assert.equal(ps[2].grad, null);
    [0, 1, 3, 4].forEach((i) => assert.ok(maxDiff(ps[i].grad!, ps[i].mul(2 * (i + 1))) < 1e-5, `grad ${i}`));
    r.dispose();
  });

  it('GradientReducer: a parameter without gradient on every rank keeps none; a late gradient is an error', async () => {
    const ps = leaves([[4], [5], [6]]);
    const r = new dist.GradientReducer(group, ps, { bucketCapMb: 1 });
    r.prepare();
    tidy(() => lossOf(ps, [1]).backward());
    assert.deepEqual(await r.finish(), { buckets: 1, overlapped: 0 }); // parameter 1 never became ready
    assert.equal(ps[1].grad, null);
    assert.ok(ps[0].grad && ps[2].grad);
    // Two backward passes with prepare(1): the second pass's gradients come after the reduction.
    ps.forEach((p) => p.clearGrad());
    r.prepare(1);
    tidy(() => { lossOf(ps).backward(); lossOf(ps).backward(); });
    await assert.rejects(r.finish(), /rank 0 of 1 \(gloo\): the gradient of parameter \d arrived after its bucket was already reduced/);
    // prepare(2): accumulated over both passes, then reduced once.
    ps.forEach((p) => p.clearGrad());
    r.prepare(2);
    tidy(() => { lossOf(ps).backward(); lossOf(ps).backward(); });
    assert.deepEqual(await r.finish(), { buckets: 1, overlapped: 1 });
    ps.forEach((p, i) => assert.ok(maxDiff(p.grad!, p.mul(4 * (i + 1))) < 1e-5));
    r.dispose();
    assert.throws(() => new dist.GradientReducer(group, [torch.ones([2])]), /params\[0\] must be a leaf tensor that requires grad/);
    assert.throws(() => new dist.GradientReducer(group, [ps[0], ps[0]]), /params\[1\] repeats params\[0\]/);
  });

  it('convertSyncBatchNorm swaps every BatchNorm, keeps its tensors, and matches BatchNorm on one rank', () => {
    torch.manualSeed(5);
    const net = new Sequential(new Conv2d(3, 4, 3), new BatchNorm2d(4), new Sequential(new BatchNorm2d(4, { momentum: null })));
    const head = new BatchNorm1d(6, { affine: false });
    const root = new Module();
    root.registerModule('net', net);
    root.registerModule('head', head);
    const before = root.stateDict();
    const x = torch.randn([2, 3, 6, 6]);
    const z = torch.randn([5, 6]);
    const clone = (sd: Record<string, Tensor>) => Object.fromEntries(Object.entries(sd).map(([k, v]) => [k, v.clone()]));
    const init = clone(before);
    const ref = [net.forward(x), head.forward(z)];
    const refState = clone(root.stateDict());
    root.loadStateDict(init);
    assert.equal(dist.convertSyncBatchNorm(root, group), 3);
    const bns = root.modules().filter((m) => m instanceof dist.SyncBatchNorm) as dist.SyncBatchNorm[];
    assert.equal(bns.length, 3);
    const after = root.stateDict();
    assert.deepEqual(Object.keys(after), Object.keys(before));
    for (const k of Object.keys(before)) assert.equal(after[k], before[k], `${k} is the same tensor`);
    // One rank: exactly BatchNorm (PyTorch's SyncBatchNorm does not communicate then).
    const out = [net.forward(x), head.forward(z)];
    out.forEach((t, i) => assert.equal(maxDiff(t, ref[i]), 0));
    for (const [k, v] of Object.entries(root.stateDict())) assert.equal(maxDiff(v.to(null, 'float64'), refState[k].to(null, 'float64')), 0, k);
    // Converting again re-points the existing SyncBatchNorms.
    assert.equal(dist.convertSyncBatchNorm(root, null), 3);
    assert.ok(bns.every((b) => b.group === null));
  });
});

// Built against a CUDA LibTorch on a machine with a GPU (scripts/gpu-check.sh): the collectives,
// SyncBatchNorm and the reducer on a one-rank NCCL group with cuda:0 tensors; pending elsewhere.
describeIf(noNccl, 'dist: one-rank NCCL group on cuda:0', function () {
  this.timeout(120000);
  let group: dist.ProcessGroup;
  let store: dist.TCPStore;

  before(async () => {
    store = await dist.TCPStore.create({ host: '127.0.0.1', port: 0, worldSize: 1, isServer: true, timeoutMs: 60000 });
    group = await dist.ProcessGroup.create({ store, rank: 0, size: 1, backend: 'nccl', device: 0, timeoutMs: 60000 });
    assert.equal(group.device, 'cuda:0');
  });
  after(() => group?.destroy());

  it('allReduce/broadcast/allGather/barrier keep cuda:0 tensors', async () => {
    const x = torch.tensor([1, -2, 3]).cuda();
    await group.allReduce(x, 'avg');
    await group.broadcast(x, 0);
    const parts = await group.allGather(x);
    await group.barrier();
    assert.equal(parts.length, 1);
    assert.equal(parts[0].device, 'cuda:0');
    assert.deepEqual(x.cpu().toArray(), [1, -2, 3]);
    assert.deepEqual(parts[0].cpu().toArray(), [1, -2, 3]);
  });

  it('SyncBatchNorm function = LibTorch batch_norm on cuda:0: output and gradients', () => {
    tidy(() => {
      torch.manualSeed(5);
      const x0 = torch.randn([6, 3, 5, 4]).mul(3).add(5).cuda();
      const gy = torch.randn([6, 3, 5, 4]).cuda();
      const run = (sync: boolean): Tensor[] => {
        const x = x0.clone().requiresGrad_(true);
        const w = torch.ones([3]).cuda().requiresGrad_(true);
        const y = sync ? dist.syncBatchNorm(group, x, null, null, w, null) : torch.batchNorm(x, null, null, w, null, true);
        y.backward(gy);
        return [y, x.grad!, w.grad!];
      };
      const [ours, ref] = [run(true), run(false)];
      ours.forEach((t, i) => assert.ok(maxDiff(t, ref[i]) < 1e-4, `output/grads ${i} differ by ${maxDiff(t, ref[i])}`));
    });
  });

  it('GradientReducer averages cuda:0 gradients in overlapped buckets', async () => {
    torch.manualSeed(3);
    const ps = [[300], [200], [50]].map((s) => torch.randn(s).cuda().requiresGrad_(true));
    const r = new dist.GradientReducer(group, ps, { bucketCapMb: 1000 / (1024 * 1024) });
    r.prepare();
    tidy(() => lossOf(ps).backward());
    assert.equal((await r.finish()).buckets, r.buckets.length);
    ps.forEach((p, i) => assert.ok(maxDiff(p.grad!, p.mul(2 * (i + 1))) < 1e-5, `grad ${i}`));
    r.dispose();
  });
});
