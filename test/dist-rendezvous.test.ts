// The rendezvous on one machine (127.0.0.1; two machines are in dist-netns.test.ts): what each rank
// checks in the others' layout and addresses, the messages of its failures, workers on the store
// torchrun's agent hosts, and through the real CLI a duplicate --node-rank, SIGTERM to a worker that
// torchrun would have started, and a launcher killed with SIGKILL while its workers wait (they die
// with it).
import { strict as assert } from 'assert';
import { spawn } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { TCPStore, freePort } from '../lib/distributed';
import { bindingFor, explainConnectError, routeTo } from '../lib/distributed/address';
import { Member, checkMembers, missingMessage } from '../lib/distributed/rendezvous';
import { childrenOf, killLeftovers, makeStore, shellEnv, show, soco, TRAIN, trainArgs } from './dist-common';

const member = (rank: number, node: number, address: string, o: Partial<Member> = {}): Member => ({
  rank, node, worldSize: 4, localWorldSize: 2, host: `host${node}`, pid: 100 + rank, masterAddr: '10.0.0.1', address, iface: 'eth0', source: 'route', ...o,
});

describe('dist: rendezvous checks and messages', () => {
  it('accepts nodes on a network, and several nodes that share one machine over loopback', () => {
    assert.equal(checkMembers([member(0, 0, '10.0.0.1'), member(1, 0, '10.0.0.1'), member(2, 1, '10.0.0.2'), member(3, 1, '10.0.0.2')]), null);
    assert.equal(checkMembers([0, 1, 2, 3].map((r) => member(r, r >> 1, '127.0.0.1', { masterAddr: '127.0.0.1' }))), null);
  });

  it('names a node that would advertise a loopback address to the others, with the cause and the fix', () => {
    const byVariable = checkMembers([member(0, 0, '10.0.0.1'), member(1, 0, '10.0.0.1'),
      member(2, 1, '127.0.0.1', { iface: 'lo', source: 'GLOO_SOCKET_IFNAME' }), member(3, 1, '127.0.0.1', { iface: 'lo', source: 'GLOO_SOCKET_IFNAME' })]);
    assert.equal(byVariable, 'node 1 (rank 2, host host1) would take collective connections on the loopback address 127.0.0.1, which the other nodes cannot reach, ' +
      'because GLOO_SOCKET_IFNAME names interface lo. Fix: on node 1, unset GLOO_SOCKET_IFNAME (soco-train then uses the interface that routes to --master-addr) ' +
      'or name the interface that reaches the other nodes');
    // `--master-addr $(hostname)` where the hostname maps to 127.0.0.1 on node 0 only.
    const byRoute = checkMembers([member(0, 0, '127.0.0.1', { masterAddr: 'gpu01' }), member(1, 0, '127.0.0.1', { masterAddr: 'gpu01' }),
      member(2, 1, '10.0.0.2', { masterAddr: 'gpu01' }), member(3, 1, '10.0.0.2', { masterAddr: 'gpu01' })]);
    assert.match(byRoute!, /^node 0 \(rank 0, host host0\) would take collective connections on the loopback address 127\.0\.0\.1, .* because its --master-addr gpu01 is \(or resolves there to\) a loopback address\. Fix: start every node with --master-addr set to node 0's address/);
  });

  it('names nodes started with another --nproc-per-node or --nnodes', () => {
    assert.equal(checkMembers([member(0, 0, '10.0.0.1'), member(2, 1, '10.0.0.2', { localWorldSize: 1, worldSize: 2 })]),
      'node 1 runs 1 process (--nproc-per-node) but node 0 runs 2: start every node with the same --nproc-per-node');
    assert.equal(checkMembers([member(0, 0, '10.0.0.1'), member(2, 1, '10.0.0.2', { worldSize: 6 })]),
      'node 1 was started for 6 ranks (3 nodes x 2) but node 0 for 4 (2 x 2): start every node with the same --nnodes');
  });

  it('names the nodes and ranks that never joined', () => {
    assert.equal(missingMessage([2, 3], 4, 2, 600000, '10.0.0.1:29500'),
      'the rendezvous timed out after 600 s: node 1 never joined (ranks 2-3 missing, 2 of 4 joined). Start it with the same command and --node-rank 1, ' +
      'able to reach 10.0.0.1:29500; if it was started, its own log says why it did not join');
    assert.match(missingMessage([1, 4, 5, 6], 8, 2, 5000, 'm:1'), /^the rendezvous timed out after 5 s: nodes 0, 2-3 never joined \(ranks 1, 4-6 missing, 4 of 8 joined\)\. Start them with the same command and --node-rank 0 \/ 2 \/ 3/);
  });

  it('explains failed connections to the master', () => {
    assert.match(explainConnectError('ECONNREFUSED', 'h', 1), /^nothing listens on h:1 \(connection refused\): node 0 has not started \(or has ended\), or the nodes were given different --master-port values$/);
    assert.match(explainConnectError('EHOSTUNREACH', 'h', 1), /^h is unreachable/);
    assert.match(explainConnectError('ENETUNREACH', 'h', 1), /^no route from this machine to h: .*`ip route get h`/);
    assert.match(explainConnectError('ETIMEDOUT', 'h', 1), /a firewall drops them, or the host is down/);
  });

  it('binds to the route to the master unless GLOO_SOCKET_IFNAME / NCCL_SOCKET_IFNAME name an interface', async () => {
    const route = await routeTo('127.0.0.1', 29500);
    assert.deepEqual(route, { masterIp: '127.0.0.1', address: '127.0.0.1', iface: 'lo' });
    await assert.rejects(routeTo('no-such-host.invalid', 1), /cannot resolve --master-addr no-such-host\.invalid \(ENOTFOUND\)/);
    const r = { masterIp: '10.0.0.1', address: '10.0.0.5', iface: 'eth7' };
    assert.deepEqual(bindingFor('gloo', r, {}), { address: '10.0.0.5', iface: 'eth7', source: 'route' });
    assert.deepEqual(bindingFor('gloo', r, { GLOO_SOCKET_IFNAME: 'lo' }), { address: '127.0.0.1', iface: 'lo', source: 'GLOO_SOCKET_IFNAME' });
    assert.deepEqual(bindingFor('gloo', r, { NCCL_SOCKET_IFNAME: 'lo' }), { address: '10.0.0.5', iface: 'eth7', source: 'route' });
    // NCCL's forms: "^" excludes, "=" is exact, else a prefix.
    assert.deepEqual(bindingFor('nccl', r, { NCCL_SOCKET_IFNAME: '^docker,=lo' }), { address: '127.0.0.1', iface: 'lo', source: 'NCCL_SOCKET_IFNAME' });
    assert.deepEqual(bindingFor('nccl', r, { NCCL_SOCKET_IFNAME: 'l' }), { address: '127.0.0.1', iface: 'lo', source: 'NCCL_SOCKET_IFNAME' });
    assert.deepEqual(bindingFor('gloo', r, { GLOO_SOCKET_IFNAME: 'nosuch0' }), { address: '', iface: null, source: 'GLOO_SOCKET_IFNAME' });
  });
});

describe('dist: rendezvous through the CLI on one machine', function () {
  this.timeout(180000);
  let dir: string;
  let store: string;

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'soco-dist-rdzv-'));
    store = path.join(dir, 'train.store');
    await makeStore(TRAIN, store);
  });
  after(() => {
    killLeftovers();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const nodeArgs = (port: number, nnodes: number, rank: number, nproc = 1): string[] =>
    [...trainArgs(store, path.join(dir, `job-${port}`), 12, 2), '--nproc-per-node', String(nproc), '--nnodes', String(nnodes), '--node-rank', String(rank),
      '--master-addr', '127.0.0.1', '--master-port', String(port)];

  it("torchrun's agent store: rank 0 joins the store that torchrun hosts on MASTER_PORT, keys under the attempt's prefix", async () => {
    // What torchrun's agent on node 0 does before it starts the workers.
    const agent = await TCPStore.create({ host: '127.0.0.1', port: 0, isServer: true, timeoutMs: 30000 });
    const out = fs.mkdtempSync(path.join(dir, 'agent-'));
    const runs = await Promise.all([0, 1].map((rank) => new Promise<{ code: number | null; stderr: string }>((resolve) => {
      const env = shellEnv({ RANK: String(rank), LOCAL_RANK: String(rank), WORLD_SIZE: '2', LOCAL_WORLD_SIZE: '2', MASTER_ADDR: '127.0.0.1',
        MASTER_PORT: String(agent.port), TORCHELASTIC_USE_AGENT_STORE: 'True', TORCHELASTIC_RESTART_COUNT: '3' });
      const child = spawn(process.execPath, [path.join(__dirname, 'dist-worker.js'), 'collectives', out], { env, stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      child.stderr.on('data', (d: Buffer) => { stderr += d; });
      child.on('close', (code) => resolve({ code, stderr }));
    })));
    for (const r of runs) assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(fs.readFileSync(path.join(out, 'collectives-1.json'), 'utf8')).sum, [3, 30, -1]);
    assert.equal(await agent.check(['/worker/attempt_3/soco/rdzv/joined']), true);
  });

  it('two nodes started with the same --node-rank end the job, saying so', async () => {
    const port = await freePort();
    const runs = await Promise.all([0, 1, 1].map((r) => soco(nodeArgs(port, 3, r))));
    for (const r of runs) {
      assert.equal(r.code, 1, show(r));
      assert.match(r.stderr, /rank 1 joined twice: from node 1 \(host [^,]+, pid \d+\) and from node 1 \(host [^,]+, pid \d+\): each node needs its own --node-rank in \[0, --nnodes\)/, show(r));
    }
  });

  it('SIGTERM to a worker at the rendezvous (as torchrun or srun send it) ends it at once with 130', async () => {
    const port = await freePort();
    let sent = false;
    const r = await soco(trainArgs(store, path.join(dir, 'torchrun'), 2, 2), {
      env: shellEnv({ RANK: '1', WORLD_SIZE: '2', LOCAL_RANK: '0', LOCAL_WORLD_SIZE: '1', GROUP_RANK: '1', MASTER_ADDR: '127.0.0.1', MASTER_PORT: String(port) }),
      onLine: (line, child) => {
        if (!sent && /^soco-train: node 1 \(rank 1 of 2\): gloo collectives on 127\.0\.0\.1 \(interface lo, the route to --master-addr 127\.0\.0\.1\)/.test(line)) { sent = true; child.kill('SIGTERM'); }
      },
    });
    assert.ok(sent, show(r));
    assert.equal(r.code, 130, show(r));
    assert.match(r.stdout, /^SIGTERM: leaving the rendezvous \(no iteration has run: nothing to checkpoint\)$/m);
    assert.match(r.stdout, /^rank 1 of 2: node 1 \(rank 1\) left the rendezvous: SIGTERM$/m);
  });

  it('a launcher killed with SIGKILL takes its workers with it (they would wait out the rendezvous)', async () => {
    const port = await freePort();
    let workers: number[] = [];
    const r = await soco(nodeArgs(port, 2, 0, 2), {
      onLine: (line, child) => {
        if (!workers.length && /^\[rank 0\] soco-train: node 0: at the rendezvous/.test(line)) {
          workers = childrenOf(child.pid!);
          child.kill('SIGKILL');
        }
      },
    });
    assert.equal(r.signal, 'SIGKILL', show(r));
    assert.equal(workers.length, 2, show(r));
    const alive = (): number[] => workers.filter((pid) => {
      try {
        return !/^\d+ \(.*\) Z /.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8')); // a zombie has ended
      } catch {
        return false;
      }
    });
    for (let i = 0; i < 100 && alive().length; i++) await new Promise((resolve) => setTimeout(resolve, 200));
    assert.deepEqual(alive(), [], 'workers outlived their launcher');
  });
});
