// Where a worker learns its place in the job: torchrun's variables (set by our launcher, torchrun
// or any launcher that follows them) or Slurm's (srun with one task per GPU).

export interface DistEnv {
  rank: number;
  worldSize: number;
  localRank: number;
  localWorldSize: number;
  nodeRank: number;
  masterAddr: string;
  masterPort: number;
  source: 'torchrun' | 'slurm';
}

type Env = Record<string, string | undefined>;

/** Thrown for a missing or malformed variable; names it and says who should have set it. */
export class DistEnvError extends Error {
  override name = 'DistEnvError';
}

function int(env: Env, name: string, o: { min?: number; max?: number; fallback?: number } = {}): number {
  const raw = env[name];
  if (raw === undefined || raw === '') {
    if (o.fallback !== undefined) return o.fallback;
    throw new DistEnvError(`environment variable ${name} is not set`);
  }
  const v = Number(raw);
  if (!/^\s*-?\d+\s*$/.test(raw) || !Number.isSafeInteger(v)) throw new DistEnvError(`${name} must be an integer, got '${raw}'`);
  if (o.min !== undefined && v < o.min) throw new DistEnvError(`${name} must be >= ${o.min}, got ${v}`);
  if (o.max !== undefined && v > o.max) throw new DistEnvError(`${name} must be <= ${o.max}, got ${v}`);
  return v;
}

/**
 * Expands a Slurm hostlist ("gpu[01-03,07],login1", "rack[1-2]-n[3-4]") into host names, in order.
 * Zero padding of ranges is kept, as Slurm does.
 */
export function expandNodelist(list: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let cur = '';
  for (const ch of list.trim()) {
    if (ch === '[') depth++;
    if (ch === ']') depth--;
    if (depth < 0) throw new DistEnvError(`malformed Slurm nodelist '${list}'`);
    if (ch === ',' && depth === 0) { parts.push(cur); cur = ''; } else cur += ch;
  }
  if (depth !== 0) throw new DistEnvError(`malformed Slurm nodelist '${list}'`);
  parts.push(cur);
  const out: string[] = [];
  for (const p of parts.map((s) => s.trim()).filter(Boolean)) out.push(...expandOne(p, list));
  return out;
}

function expandOne(pattern: string, whole: string): string[] {
  const open = pattern.indexOf('[');
  if (open < 0) return [pattern];
  const close = pattern.indexOf(']', open);
  const head = pattern.slice(0, open);
  const tails = expandOne(pattern.slice(close + 1), whole);
  const out: string[] = [];
  for (const item of pattern.slice(open + 1, close).split(',')) {
    const m = /^(\d+)(?:-(\d+))?$/.exec(item.trim());
    if (!m) throw new DistEnvError(`malformed range '${item}' in Slurm nodelist '${whole}'`);
    const [lo, hi] = [Number(m[1]), Number(m[2] ?? m[1])];
    if (hi < lo) throw new DistEnvError(`descending range '${item}' in Slurm nodelist '${whole}'`);
    const width = m[1].length;
    for (let i = lo; i <= hi; i++) for (const t of tails) out.push(head + String(i).padStart(width, '0') + t);
  }
  return out;
}

/** Tasks on node `nodeId` from a Slurm tasks-per-node string such as "4(x2),3". */
export function tasksOnNode(tasksPerNode: string, nodeId: number): number {
  let node = 0;
  for (const part of tasksPerNode.split(',')) {
    const m = /^(\d+)(?:\(x(\d+)\))?$/.exec(part.trim());
    if (!m) throw new DistEnvError(`malformed Slurm tasks-per-node '${tasksPerNode}'`);
    node += Number(m[2] ?? 1);
    if (nodeId < node) return Number(m[1]);
  }
  throw new DistEnvError(`Slurm tasks-per-node '${tasksPerNode}' has no entry for node ${nodeId}`);
}

/** MASTER_ADDR / MASTER_PORT, or Slurm's first node and a port derived from the job id (same on every task). */
export function slurmMaster(env: Env): { addr: string; port: number } {
  let addr = env.MASTER_ADDR;
  if (!addr) {
    const list = env.SLURM_JOB_NODELIST ?? env.SLURM_NODELIST ?? env.SLURM_STEP_NODELIST;
    if (!list) throw new DistEnvError('under Slurm without MASTER_ADDR, SLURM_JOB_NODELIST (or SLURM_NODELIST) is needed to find the master node');
    addr = expandNodelist(list)[0];
  }
  const port = env.MASTER_PORT
    ? int(env, 'MASTER_PORT', { min: 1, max: 65535 })
    : 20000 + (int(env, 'SLURM_JOB_ID', { min: 0, fallback: 0 }) % 20000);
  return { addr, port };
}

/**
 * The job layout from the environment, or null when this process is not part of a multi-process
 * job. torchrun's RANK/WORLD_SIZE win over Slurm's variables (our launcher under srun sets both).
 */
export function readDistEnv(env: Env = process.env): DistEnv | null {
  if (env.RANK !== undefined || env.WORLD_SIZE !== undefined) {
    const worldSize = int(env, 'WORLD_SIZE', { min: 1 });
    const rank = int(env, 'RANK', { min: 0, max: worldSize - 1 });
    if (!env.MASTER_ADDR) throw new DistEnvError('MASTER_ADDR is not set (RANK and WORLD_SIZE are: the launcher must set MASTER_ADDR and MASTER_PORT too)');
    const masterPort = int(env, 'MASTER_PORT', { min: 1, max: 65535 });
    const localWorldSize = int(env, 'LOCAL_WORLD_SIZE', { min: 1, fallback: worldSize });
    const localRank = int(env, 'LOCAL_RANK', { min: 0, max: localWorldSize - 1, fallback: rank % localWorldSize });
    const nodeRank = int(env, 'GROUP_RANK', { min: 0, fallback: int(env, 'NODE_RANK', { min: 0, fallback: Math.floor(rank / localWorldSize) }) });
    return { rank, worldSize, localRank, localWorldSize, nodeRank, masterAddr: env.MASTER_ADDR, masterPort, source: 'torchrun' };
  }
  if (env.SLURM_PROCID !== undefined && env.SLURM_NTASKS !== undefined) {
    const worldSize = int(env, 'SLURM_NTASKS', { min: 1 });
    const rank = int(env, 'SLURM_PROCID', { min: 0, max: worldSize - 1 });
    if (worldSize === 1) return null;
    const nodeRank = int(env, 'SLURM_NODEID', { min: 0, fallback: 0 });
    const perNode = env.SLURM_STEP_TASKS_PER_NODE ?? env.SLURM_TASKS_PER_NODE;
    const localWorldSize = env.SLURM_NTASKS_PER_NODE
      ? int(env, 'SLURM_NTASKS_PER_NODE', { min: 1 })
      : perNode ? tasksOnNode(perNode, nodeRank) : worldSize;
    const localRank = int(env, 'SLURM_LOCALID', { min: 0, max: localWorldSize - 1 });
    const { addr, port } = slurmMaster(env);
    return { rank, worldSize, localRank, localWorldSize, nodeRank, masterAddr: addr, masterPort: port, source: 'slurm' };
  }
  return null;
}
