// Which local address a rank's collectives use, and what a failed connection means.
//
// PyTorch binds Gloo to the address of the machine's hostname. Many containers and cloud images
// map the hostname to 127.0.0.1, and then rank 0 advertises a loopback address that no other node
// can reach. The address that surely reaches the other nodes is the one this machine uses towards
// the master: the source address the kernel picks for a connection to it (the store connection
// itself uses it), learned from a connected UDP socket, which sends nothing.
import * as dgram from 'dgram';
import * as dns from 'dns';
import * as net from 'net';
import * as os from 'os';
import { Backend } from './group';

type Env = Record<string, string | undefined>;

export function isLoopback(address: string): boolean {
  return /^127\./.test(address) || address === '::1' || /^::ffff:127\./i.test(address);
}

/** The interface that has `address` (null: none of this machine's). */
export function interfaceOf(address: string): string | null {
  for (const [name, addrs] of Object.entries(os.networkInterfaces()))
    if (addrs?.some((a) => a.address === address)) return name;
  return null;
}

/** The first IPv4 address of interface `name` (else its first IPv6 one); null when it has none. */
export function addressOf(name: string): string | null {
  const addrs = os.networkInterfaces()[name] ?? [];
  return (addrs.find((a) => a.family === 'IPv4') ?? addrs[0])?.address ?? null;
}

export interface Route {
  /** The master's address, resolved. */
  masterIp: string;
  /** This machine's address towards it. */
  address: string;
  /** The interface that has that address (null: not found). */
  iface: string | null;
}

/** The local address and interface this machine uses to reach `host`. Rejects with the cause and the fix. */
export async function routeTo(host: string, port: number): Promise<Route> {
  let masterIp: string;
  let family: number;
  try {
    ({ address: masterIp, family } = await dns.promises.lookup(host));
  } catch (err) {
    throw new Error(`cannot resolve --master-addr ${host} (${(err as NodeJS.ErrnoException).code}): give node 0's IP address, or a name every node resolves`);
  }
  const sock = dgram.createSocket(family === 6 ? 'udp6' : 'udp4');
  try {
    const address = await new Promise<string>((resolve, reject) => {
      sock.connect(port, masterIp, (err?: Error) => (err ? reject(err) : resolve(sock.address().address)));
    });
    return { masterIp, address, iface: interfaceOf(address) };
  } catch (err) {
    throw new Error(explainConnectError((err as NodeJS.ErrnoException).code ?? String(err), host, port));
  } finally {
    sock.close();
  }
}

/**
 * Tries a TCP connection (closed at once): null when something listens there, else the error
 * code ('ECANCELED' as soon as `cancelled()` says so).
 */
export function probe(host: string, port: number, timeoutMs: number, cancelled: () => boolean = () => false): Promise<string | null> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    const done = (code: string | null): void => { clearTimeout(timer); clearInterval(watch); s.destroy(); resolve(code); };
    const timer = setTimeout(() => done('ETIMEDOUT'), timeoutMs);
    const watch = setInterval(() => { if (cancelled()) done('ECANCELED'); }, 100);
    s.once('connect', () => done(null));
    s.once('error', (err: NodeJS.ErrnoException) => done(err.code ?? err.message));
  });
}

/** What a failed connection to the master means, and what to do. */
export function explainConnectError(code: string, host: string, port: number): string {
  switch (code) {
    case 'ECONNREFUSED':
      return `nothing listens on ${host}:${port} (connection refused): node 0 has not started (or has ended), or the nodes were given different --master-port values`;
    case 'EHOSTUNREACH':
      return `${host} is unreachable (no host answers at that address): is node 0 up, and is --master-addr its address on the network that joins the nodes?`;
    case 'ENETUNREACH':
      return `no route from this machine to ${host}: --master-addr must be node 0's address on a network this machine is on (\`ip route get ${host}\` says where it would go)`;
    case 'ETIMEDOUT':
      return `connections to ${host}:${port} get no answer: a firewall drops them, or the host is down`;
    default:
      return `cannot connect to ${host}:${port}: ${code}`;
  }
}

export interface Binding {
  /** Where this rank's collectives listen ('' when an interface variable names no address here). */
  address: string;
  iface: string | null;
  /** Why: the route to the master, or the user's interface variable. */
  source: 'route' | 'GLOO_SOCKET_IFNAME' | 'NCCL_SOCKET_IFNAME';
}

/**
 * The address a rank's collectives use. GLOO_SOCKET_IFNAME / NCCL_SOCKET_IFNAME win (their first
 * interface; NCCL's "=name" exact and "^name" exclusion forms are understood); else the route to
 * the master.
 */
export function bindingFor(backend: Backend, route: Route, env: Env): Binding {
  const variable = backend === 'gloo' ? 'GLOO_SOCKET_IFNAME' : 'NCCL_SOCKET_IFNAME';
  const value = env[variable];
  if (!value) return { address: route.address, iface: route.iface, source: 'route' };
  const names = Object.keys(os.networkInterfaces());
  let iface: string | undefined;
  for (const item of value.split(',').map((s) => s.trim()).filter(Boolean)) {
    if (item.startsWith('^')) continue;
    // Gloo takes exact names; NCCL prefixes, unless "=name".
    const exact = backend === 'gloo' || item.startsWith('=');
    const name = item.replace(/^=/, '');
    iface = names.find((n) => (exact ? n === name : n.startsWith(name)));
    if (iface) break;
  }
  return { address: iface ? addressOf(iface) ?? '' : '', iface: iface ?? null, source: variable };
}
