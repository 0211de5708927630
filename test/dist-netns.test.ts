// Multi-node training across two machines, as a user runs it: `soco-train train --nproc-per-node 1
// --nnodes N --node-rank R --master-addr 10.77.0.1` in two network namespaces joined by a veth pair
// (test/dist-hosts.ts), whose shared hostname resolves to 127.0.0.1 (the loopback trap of many
// containers and cloud images), with no GLOO_SOCKET_IFNAME / NCCL_SOCKET_IFNAME.
//  - 2 nodes x 1 process train as 1 process with the global batch (losses and weights), and each
//    node says which address and interface its collectives use.
//  - Every failure ends every process of the job with a message that names the cause and the fix:
//    a node that never comes, a master that cannot be reached (refused, unreachable, no route), a
//    node that advertises a loopback address, different --nnodes, a port in use, SIGTERM/SIGINT at
//    the rendezvous, a launcher killed with SIGKILL mid-run, a node that crashes mid-run.
// Needs root and iproute2; elsewhere the tests are pending, with the reason in their titles.
import { strict as assert } from 'assert';
import { ChildProcess, execFileSync, spawn } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { HOSTNAME, Host, HostPair, unavailable } from './dist-hosts';
import { Run, assertSameTraining, killLeftovers, makeStore, shellEnv, show, soco, TRAIN, trainArgs } from './dist-common';

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

describe('two machines (network namespaces 10.77.0.1 / 10.77.0.2, one hostname that resolves to 127.0.0.1, no *_SOCKET_IFNAME)', function () {
  this.timeout(300000);
  let hosts: HostPair;
  let dir: string;
  let store: string;

  before(async function () {
    let why = unavailable();
    if (!why) {
      try {
        hosts = HostPair.create();
      } catch (err) {
        why = (err as Error).message;
      }
    }
    if (why) {
      for (const t of this.test!.parent!.tests) t.title += ` (pending: ${why})`;
      this.skip();
    }
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'soco-dist-netns-'));
    store = path.join(dir, 'train.store');
    await makeStore(TRAIN, store);
  });
  after(() => {
    killLeftovers();
    hosts?.destroy();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  /** Node `rank` of a job of `nnodes` x 1 process, on `h`, with the master on hosts.a. */
  function node(h: Host, rank: number, o: { nnodes?: number; port: number; out?: string; batch?: number; iters?: number; args?: string[]; env?: NodeJS.ProcessEnv; onLine?: (line: string, child: ChildProcess) => void }): Promise<Run> {
    const args = [...trainArgs(store, path.join(dir, o.out ?? `job-${o.port}`), o.batch ?? 2, o.iters ?? 2),
      '--nproc-per-node', '1', '--nnodes', String(o.nnodes ?? 2), '--node-rank', String(rank), '--master-addr', hosts.a.address, '--master-port', String(o.port), ...(o.args ?? [])];
    return soco(args, { prefix: hosts.prefix(h), env: shellEnv(o.env), onLine: o.onLine });
  }

  /** Every process of the job has ended on both machines (a worker may take a moment to be reaped). */
  async function assertNothingLeft(): Promise<void> {
    for (let i = 0; i < 100 && (hosts.pids(hosts.a).length || hosts.pids(hosts.b).length); i++) await sleep(200);
    const left = [...hosts.pids(hosts.a), ...hosts.pids(hosts.b)].map((pid) => {
      try { return `${pid} ${fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ')}`; } catch { return `${pid} (exited)`; }
    });
    assert.deepEqual(left, [], 'processes left on the machines');
  }

  const lines = (r: Run): string => `${r.stdout}\n${r.stderr}`;

  it('2 nodes x 1 process = 1 process with the global batch: same losses and weights; each node names its address and interface; checkpoint and export', async () => {
    // The trap is in place: the hostname resolves to loopback on both machines.
    for (const h of [hosts.a, hosts.b]) {
      const resolved = execFileSync(hosts.prefix(h)[0], [...hosts.prefix(h).slice(1), 'getent', 'hosts', HOSTNAME], { encoding: 'utf8' });
      assert.match(resolved, /^127\.0\.0\.1\s/, resolved);
    }
    const one = path.join(dir, 'one');
    const args = ['--warmup-epochs', '0'];
    const [r1, n0, n1] = await Promise.all([
      soco([...trainArgs(store, one, 8, 2), ...args]),
      node(hosts.a, 0, { port: 29500, out: 'two', batch: 8, args }),
      node(hosts.b, 1, { port: 29500, out: 'two', batch: 8, args }),
    ]);
    for (const r of [r1, n0, n1]) assert.equal(r.code, 0, show(r));
    assert.match(n0.stderr, new RegExp(`\\[rank 0\\] soco-train: node 0 \\(rank 0 of 2\\): gloo collectives on 10\\.77\\.0\\.1 \\(interface ${hosts.a.iface}, the route to --master-addr 10\\.77\\.0\\.1\\)`));
    assert.match(n1.stderr, new RegExp(`\\[rank 1\\] soco-train: node 1 \\(rank 1 of 2\\): gloo collectives on 10\\.77\\.0\\.2 \\(interface ${hosts.b.iface}, the route to --master-addr 10\\.77\\.0\\.1\\)`));
    assert.match(n0.stdout, /^done: 2 iterations/m);
    assert.doesNotMatch(n1.stdout, /^(epoch|done)/m, 'node 1 does not log');
    assert.ok(fs.existsSync(path.join(dir, 'two', 'detectron2.pth')), show(n0));
    assertSameTraining(one, path.join(dir, 'two'), 2);
    await assertNothingLeft();
  });

  it('a node that never comes ends the job at --rendezvous-timeout naming it; a master that cannot be reached is explained (refused, unreachable, no route)', async () => {
    const [alone, refused, unreachable, noRoute] = await Promise.all([
      node(hosts.a, 0, { port: 29511, args: ['--rendezvous-timeout', '5'] }),
      node(hosts.b, 1, { port: 29512, args: ['--rendezvous-timeout', '5'] }),
      node(hosts.b, 1, { port: 29513, args: ['--rendezvous-timeout', '6', '--master-addr', '10.77.0.9'] }),
      // At once, not at the timeout.
      node(hosts.b, 1, { port: 29514, args: ['--master-addr', '10.99.0.1'] }),
    ]);
    for (const r of [alone, refused, unreachable, noRoute]) assert.equal(r.code, 1, show(r));
    assert.match(alone.stderr, /rank 0 of 2: the rendezvous timed out after 5 s: node 1 never joined \(rank 1 missing, 1 of 2 joined\)\. Start it with the same command and --node-rank 1/);
    assert.match(refused.stderr, /rank 1 of 2: node 0 \(the rendezvous host\) did not answer within 5 s: nothing listens on 10\.77\.0\.1:29512 \(connection refused\): node 0 has not started/);
    assert.match(unreachable.stderr, /node 0 \(the rendezvous host\) did not answer within 6 s: 10\.77\.0\.9 is unreachable \(no host answers at that address\)/);
    assert.match(noRoute.stderr, /rank 1 of 2: cannot join the job at 10\.99\.0\.1:29514: no route from this machine to 10\.99\.0\.1: --master-addr must be node 0's address/);
    await assertNothingLeft();
  });

  it('a misconfigured node ends every node at once: a loopback address advertised (GLOO_SOCKET_IFNAME=lo), different --nnodes, the port in use', async () => {
    const holder = spawn(hosts.prefix(hosts.a)[0], [...hosts.prefix(hosts.a).slice(1), process.execPath, '-e',
      "require('net').createServer(() => {}).listen(29523, () => console.log('listening'))"], { stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      await new Promise((resolve) => holder.stdout!.once('data', resolve));
      const [lo0, lo1, ws0, ws1, busy0, busy1] = await Promise.all([
        node(hosts.a, 0, { port: 29521 }),
        node(hosts.b, 1, { port: 29521, env: { GLOO_SOCKET_IFNAME: 'lo' } }),
        node(hosts.a, 0, { port: 29522, batch: 6 }),
        node(hosts.b, 1, { port: 29522, batch: 6, nnodes: 3 }),
        node(hosts.a, 0, { port: 29523, args: ['--rendezvous-timeout', '5'] }),
        node(hosts.b, 1, { port: 29523, args: ['--rendezvous-timeout', '5'] }),
      ]);
      for (const r of [lo0, lo1, ws0, ws1, busy0, busy1]) assert.equal(r.code, 1, show(r));
      const loopback = 'node 1 \\(rank 1, host soco-node\\) would take collective connections on the loopback address 127\\.0\\.0\\.1, which the other nodes cannot reach, ' +
        'because GLOO_SOCKET_IFNAME names interface lo\\. Fix: on node 1, unset GLOO_SOCKET_IFNAME';
      assert.match(lo0.stderr, new RegExp(`rank 0 of 2: the job ended at its start: ${loopback}`));
      assert.match(lo1.stderr, new RegExp(`rank 1 of 2: ${loopback}`));
      const sizes = 'node 1 was started for 3 ranks \\(3 nodes x 1\\) but node 0 for 2 \\(2 x 1\\): start every node with the same --nnodes';
      assert.match(ws0.stderr, new RegExp(`rank 0 of 2: the job ended at its start: ${sizes}`));
      assert.match(ws1.stderr, new RegExp(`rank 1 of 3: ${sizes}`));
      assert.match(busy0.stderr, /rank 0 of 2: node 0 cannot host the rendezvous: .*port 29523 is in use on this machine .*choose another --master-port/);
      assert.match(busy1.stderr, /rank 1 of 2: the rendezvous store at 10\.77\.0\.1:29523 does not answer \(node 0 has gone silent, or another program holds that port there\)/);
    } finally {
      holder.kill('SIGKILL');
    }
    await assertNothingLeft();
  });

  it('SIGTERM or SIGINT at the rendezvous ends the job within seconds: the node that got it (130) and the nodes it waited with', async () => {
    // Jobs of 3 nodes of which 2 came: the signal reaches node 1 (the first job) or node 0, the store host (the second).
    const at = (r: number) => new RegExp(`^\\[rank ${r}\\] soco-train: node ${r}: at the rendezvous`);
    const ready: Record<string, boolean> = {};
    const sent: Record<string, number> = {};
    const job = (port: number, target: number, sig: NodeJS.Signals): Promise<Run>[] => [0, 1].map((r) => node(r ? hosts.b : hosts.a, r, {
      port, nnodes: 3, batch: 6,
      onLine: (line, child) => {
        if (!at(r).test(line)) return;
        ready[`${port}/${r}`] = true;
        if (r === target) targets[port] = child;
        if (ready[`${port}/0`] && ready[`${port}/1`] && !sent[port]) { sent[port] = Date.now(); targets[port].kill(sig); }
      },
    }));
    const targets: Record<number, ChildProcess> = {};
    const [a0, a1, b0, b1] = await Promise.all([...job(29531, 1, 'SIGTERM'), ...job(29532, 0, 'SIGINT')]);
    assert.ok(sent[29531] && sent[29532], `${show(a0)}\n${show(a1)}\n${show(b0)}\n${show(b1)}`);
    assert.equal(a1.code, 130, show(a1));
    assert.match(lines(a1), /rank 1 of 3: node 1 \(rank 1\) left the rendezvous: SIGTERM to the launcher/);
    assert.equal(a0.code, 1, show(a0));
    assert.match(a0.stderr, /rank 0 of 3: the job ended at its start: node 1 \(rank 1\) left the rendezvous: SIGTERM to the launcher/);
    assert.equal(b0.code, 130, show(b0));
    assert.match(lines(b0), /rank 0 of 3: node 0 \(rank 0\) left the rendezvous: SIGINT to the launcher/);
    assert.equal(b1.code, 1, show(b1));
    assert.match(b1.stderr, /rank 1 of 3: the job ended at its start: node 0 \(rank 0\) left the rendezvous: SIGINT to the launcher/);
    await assertNothingLeft();
  });

  it('SIGKILL to a launcher mid-run: its worker dies with it, and the other node ends naming the node it lost', async () => {
    let killed = 0;
    let victim: ChildProcess | null = null;
    const [n0, n1] = await Promise.all([
      node(hosts.a, 0, { port: 29541, iters: 50, onLine: (line) => {
        if (!killed && victim && /^epoch \d+\/\d+ iter 1\/50 loss/.test(line)) { killed = Date.now(); victim.kill('SIGKILL'); }
      } }),
      node(hosts.b, 1, { port: 29541, iters: 50, onLine: (_line, child) => { victim = child; } }),
    ]);
    assert.ok(killed, show(n0));
    assert.equal(n1.signal, 'SIGKILL');
    assert.equal(n0.code, 1, show(n0));
    assert.match(n0.stderr, /rank 0 of 2 \(gloo\): .* failed: .*\[10\.77\.0\.2\]:\d+.*; the peer at 10\.77\.0\.2 is node 1 \(rank 1\): it ended \(its own log says why\) or the network to it failed/);
    assert.match(n0.stderr, /soco-train: worker rank 0 \(pid \d+\) exited with code 1/);
    await assertNothingLeft();
  });

  it('a node that crashes mid-run (link down, then its processes gone): the other ends at the collective timeout', async () => {
    let crashed = 0;
    const env = { SOCO_DIST_TIMEOUT: '10' };
    const [n0, n1] = await Promise.all([
      node(hosts.a, 0, { port: 29551, iters: 50, env, onLine: (line) => {
        if (!crashed && /^epoch \d+\/\d+ iter 1\/50 loss/.test(line)) { crashed = Date.now(); hosts.crash(hosts.b); }
      } }),
      node(hosts.b, 1, { port: 29551, iters: 50, env }),
    ]).finally(() => hosts.revive(hosts.b));
    assert.ok(crashed, show(n0));
    assert.equal(n1.signal, 'SIGKILL');
    assert.equal(n0.code, 1, show(n0));
    assert.match(n0.stderr, /rank 0 of 2 \(gloo\): .* timed out after 10000 ms \(another rank is slow, stuck or gone\)/);
    await assertNothingLeft();
  });
});
