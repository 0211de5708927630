// Two "machines" for the multi-node tests: network namespaces joined by a veth pair, 10.77.0.1 and
// 10.77.0.2, set up as many containers and cloud images are: both have the same hostname, which
// their /etc/hosts maps to 127.0.0.1 (`ip netns exec` bind-mounts /etc/netns/NAME/hosts over
// /etc/hosts; a UTS namespace gives each process tree the hostname). Needs root and iproute2.
// Names are unique per run; namespaces left by a run that was killed before it could clean up
// (its pid is in the name) are removed by the next one.
import { execFileSync } from 'child_process';
import * as fs from 'fs';

export const HOSTNAME = 'soco-node';
const PREFIX = 'soco-t';

export interface Host {
  ns: string;
  iface: string;
  address: string;
}

function ip(...args: string[]): string {
  return execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Why two namespaces cannot be made here, or null. */
export function unavailable(): string | null {
  if (process.platform !== 'linux') return `network namespaces are Linux only (this is ${process.platform})`;
  if (process.getuid?.() !== 0) return 'creating network namespaces needs root (CAP_NET_ADMIN); run the suite as root to include them';
  for (const [cmd, arg] of [['ip', '-V'], ['unshare', '--version']]) {
    try {
      execFileSync(cmd, [arg], { stdio: 'ignore' });
    } catch {
      return `\`${cmd}\` is not installed (apt-get install ${cmd === 'ip' ? 'iproute2' : 'util-linux'})`;
    }
  }
  return null;
}

function removeNamespace(ns: string): void {
  for (const pid of pidsIn(ns)) {
    try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
  }
  try { ip('netns', 'del', ns); } catch { /* already gone */ }
  fs.rmSync(`/etc/netns/${ns}`, { recursive: true, force: true });
}

function pidsIn(ns: string): number[] {
  try {
    return ip('netns', 'pids', ns).split('\n').filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

let made = 0;

export class HostPair {
  private constructor(readonly a: Host, readonly b: Host) {}

  /** Two namespaces joined by a veth pair; throws with iproute2's message when that is not allowed. */
  static create(): HostPair {
    for (const line of ip('netns', 'list').split('\n')) {
      const m = new RegExp(`^(${PREFIX}-(\\d+)-\\d+[ab])\\b`).exec(line);
      if (m && !alive(Number(m[2]))) removeNamespace(m[1]);
    }
    const id = `${process.pid}-${made++}`;
    const tag = `${process.pid.toString(36)}${made}`;
    const a: Host = { ns: `${PREFIX}-${id}a`, iface: `sva${tag}`, address: '10.77.0.1' };
    const b: Host = { ns: `${PREFIX}-${id}b`, iface: `svb${tag}`, address: '10.77.0.2' };
    const pair = new HostPair(a, b);
    try {
      ip('link', 'add', a.iface, 'type', 'veth', 'peer', 'name', b.iface);
      for (const h of [a, b]) {
        ip('netns', 'add', h.ns);
        ip('link', 'set', h.iface, 'netns', h.ns);
        ip('-n', h.ns, 'addr', 'add', `${h.address}/24`, 'dev', h.iface);
        ip('-n', h.ns, 'link', 'set', h.iface, 'up');
        ip('-n', h.ns, 'link', 'set', 'lo', 'up');
        fs.mkdirSync(`/etc/netns/${h.ns}`, { recursive: true });
        fs.writeFileSync(`/etc/netns/${h.ns}/hosts`, `127.0.0.1 localhost\n127.0.0.1 ${HOSTNAME}\n`);
      }
    } catch (err) {
      pair.destroy();
      try { ip('link', 'del', a.iface); } catch { /* moved or never made */ }
      const e = err as Error & { stderr?: string };
      throw new Error(`cannot create the test namespaces: ${e.stderr?.trim() || e.message}`);
    }
    return pair;
  }

  /** The command prefix that runs a command on `h`, under the shared hostname. */
  prefix(h: Host): string[] {
    return ['ip', 'netns', 'exec', h.ns, 'unshare', '--uts', 'sh', '-c', `hostname ${HOSTNAME} && exec "$@"`, 'sh'];
  }

  /** The processes running on `h`. */
  pids(h: Host): number[] { return pidsIn(h.ns); }

  /** `h` vanishes from the network as a crashed machine does: its link goes down first (no FIN or RST leaves it), then its processes die. */
  crash(h: Host): void {
    ip('-n', h.ns, 'link', 'set', h.iface, 'down');
    for (const pid of pidsIn(h.ns)) {
      try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
    }
  }

  /** Brings `h`'s link back up after crash(). */
  revive(h: Host): void { ip('-n', h.ns, 'link', 'set', h.iface, 'up'); }

  destroy(): void {
    for (const h of [this.a, this.b]) removeNamespace(h.ns);
  }
}
