// Proof that pretraining learned object-level features, not only that the loss fell: on held-out
// photos, every proposal seen in one augmented view (V2: a random crop, flipped, colour-jittered,
// blurred, solarized...) must find itself among ALL proposals of ALL images seen in another
// augmented view (V1). Top-1 accuracy of cosine nearest neighbour on the object-level features
// h = f^H(RoIAlign(f^I(V), b)) of the online network, pretrained vs randomly initialised (same
// architecture, same views, same boxes).
import * as fs from 'fs';
import * as path from 'path';
import * as torch from '../torch';
import { Tensor, cat, noGrad, normalize, tidy } from '../torch';
import { SoCoNetwork, SoCoNetworkOptions } from '../model';
import { SoCoLoader, disposeBatch } from '../data/loader';
import { PAPER_GEOMETRY } from '../data/views_geometry';
import { TrainConfig, DEFAULT_CONFIG, networkOptions } from './config';
import { listImageFiles, openProposals } from './data_source';

export interface RetrievalOptions {
  /** A soco-train checkpoint; without one only the random network is scored. */
  checkpoint?: string;
  images: string;
  proposals: string;
  /** Rounds of fresh augmented views (each round: every image once). */
  rounds?: number;
  /** Proposals per image per round. */
  k?: number;
  seed?: number;
  device?: string;
  /** Network layout when no checkpoint gives it. */
  network?: Partial<SoCoNetworkOptions>;
  /** V1 size (default: the checkpoint's, else 224). */
  v1Size?: number;
  /** V2 size (default: the checkpoint's, else 224): the crop view at the scale the network was trained on. */
  v2Size?: number;
  /**
   * BatchNorm statistics for the features: 'batch' (default; training mode, as SoCo computes its
   * embeddings and as Detectron2's SyncBN fine-tuning starts) or 'running' (eval mode: the running
   * estimates, which lag the weights after a short pretraining).
   */
  bn?: 'batch' | 'running';
  /**
   * Which features: 'h' (default; the object-level representation f^H(RoIAlign(f^I(V), b)) that
   * Detectron2 receives) or 'projection' (g(h), the space the SoCo loss compares).
   */
  space?: 'h' | 'projection';
}

export interface RetrievalScore {
  /** Top-1 is the very same proposal. */
  top1: number;
  correct: number;
  /**
   * Top-1 is the same object: a box of the same image overlapping the query's proposal at
   * IoU >= 0.5 (selective search yields many near-duplicate boxes of one object).
   */
  top1Object: number;
  correctObject: number;
  /** Top-1 is a box of the same image (any proposal). */
  top1Image: number;
  correctImage: number;
  queries: number;
}
export interface RetrievalResult {
  pretrained: RetrievalScore | null;
  random: RetrievalScore;
  images: number;
  /** Mean number of candidate boxes each query is ranked against. */
  gallery: number;
  /** Expected top-1 of a uniform random guess (same proposal; same object). */
  chance: number;
  chanceObject: number;
  chanceImage: number;
}

/** The online network of a soco-train checkpoint (and the config it was trained with). */
export function loadOnlineNetwork(file: string): { net: SoCoNetwork; config: Partial<TrainConfig> } {
  if (!fs.existsSync(file)) throw new Error(`--checkpoint ${file}: no such file`);
  const st = torch.load(file) as Record<string, unknown>;
  try {
    if (st.format !== 'soco-train checkpoint 1' || typeof st.config !== 'string')
      throw new Error(`--checkpoint ${file} is not a soco-train training checkpoint`);
    const config = JSON.parse(st.config) as Partial<TrainConfig>;
    const net = new SoCoNetwork(networkOptions({ ...DEFAULT_CONFIG, ...config }));
    const sd: Record<string, Tensor> = {};
    for (const [k, v] of Object.entries(st.online as Record<string, Tensor>)) if (k.startsWith('online.')) sd[k.slice(7)] = v;
    net.loadStateDict(sd);
    return { net, config };
  } finally {
    disposeDeep(st);
  }
}

/** Object-level features h (or g(h)) of the boxes [N*K, 5] of one view: [N*K, D]. */
function boxFeatures(net: SoCoNetwork, image: Tensor, boxes: Tensor, levels: Tensor, space: 'h' | 'projection'): Tensor {
  return tidy(() => {
    const f = net.features(image);
    const h = net.roi_heads.forward(f, boxes, net.multiLevel ? net.levels(boxes, levels) : undefined, [image.size(2), image.size(3)]);
    return space === 'projection' ? net.projector.forward(h) : h;
  });
}

/** Index of each query row's nearest gallery row by cosine. */
export function nearest(query: Tensor, gallery: Tensor): number[] {
  return tidy(() => normalize(query, 2, 1).mm(normalize(gallery, 2, 1).T).argmax(1).toArray());
}

/** Top-1 of each query row among the gallery rows (cosine), correct when the key matches. */
export function top1(query: Tensor, gallery: Tensor, queryKeys: string[], galleryKeys: string[]): number {
  let correct = 0;
  nearest(query, gallery).forEach((j, i) => { if (galleryKeys[j] === queryKeys[i]) correct++; });
  return correct;
}

export function iou(a: readonly number[], b: readonly number[]): number {
  const w = Math.max(0, Math.min(a[2], b[2]) - Math.max(a[0], b[0]));
  const h = Math.max(0, Math.min(a[3], b[3]) - Math.max(a[1], b[1]));
  const inter = w * h;
  const union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter;
  return union > 0 ? inter / union : 0;
}

export async function evalRetrieval(o: RetrievalOptions): Promise<RetrievalResult> {
  const rounds = o.rounds ?? 10;
  const k = o.k ?? 8;
  const seed = o.seed ?? 0;
  const device = o.device ?? 'cpu';
  const root = path.resolve(o.images);
  if (!fs.existsSync(root) || !fs.statSync(root).isDirectory()) throw new Error(`--images ${o.images}: no such folder`);
  const files = listImageFiles(root);
  if (files.length < 2) throw new Error(`--images ${o.images}: needs at least 2 images, found ${files.length}`);
  if (!fs.existsSync(o.proposals)) throw new Error(`--proposals ${o.proposals}: no such file`);
  const { store, lookup } = openProposals(o.proposals, o.images, files);

  let pretrained: SoCoNetwork | null = null;
  let config: Partial<TrainConfig> = {};
  if (o.checkpoint) ({ net: pretrained, config } = loadOnlineNetwork(o.checkpoint));
  const opts = o.checkpoint ? networkOptions({ ...DEFAULT_CONFIG, ...config }) : { ...networkOptions(DEFAULT_CONFIG), ...o.network };
  // The baseline: the same architecture at its initialisation, seeded.
  torch.manualSeed(seed);
  const random = new SoCoNetwork(opts);
  const nets = [pretrained, random].filter((n): n is SoCoNetwork => n !== null);
  for (const n of nets) { if (device !== 'cpu') n.to(device); n.train(o.bn !== 'running'); }

  // Two views per image: V1 (whole image) and V2 (a random crop), BYOL augmentations on both.
  // No box jitter: the same proposal is the same box in both views.
  const loader = new SoCoLoader({
    root, files, proposals: lookup, batchSize: Math.min(files.length, 32), dropLast: false, seed, prefetch: 1, device,
    geometry: {
      ...PAPER_GEOMETRY, arch: 'c4', k, jitter: false, v1Size: o.v1Size ?? config.v1Size ?? PAPER_GEOMETRY.v1Size,
      v2Size: o.v2Size ?? config.v2Size ?? PAPER_GEOMETRY.v2Size, levelThresholds: config.levelThresholds ?? PAPER_GEOMETRY.levelThresholds,
    },
    log: () => undefined,
  });
  const correct = nets.map(() => 0);
  const correctObject = nets.map(() => 0);
  const correctImage = nets.map(() => 0);
  let queries = 0;
  let gallerySum = 0;
  let chanceSum = 0;
  let chanceObjectSum = 0;
  let chanceImageSum = 0;
  try {
    for (let r = 0; r < rounds; r++) {
      const q: Tensor[][] = nets.map(() => []);
      const g: Tensor[][] = nets.map(() => []);
      const qKeys: string[] = [];
      const gKeys: string[] = [];
      // Per gallery row: image and box in its V1 (one frame per image, so IoUs compare).
      const gImage: number[] = [];
      const gBox: number[][] = [];
      try {
        for await (const b of loader.epoch(r)) {
          try {
            const ids = b.ids.toArray();
            const v1Boxes = b.boxes[0].toArray();
            const [n, kk] = b.ids.shape;
            const keys = ids.map((id, i) => `${b.images[Math.floor(i / kk)]}:${id}`);
            const rows = ids.map((id, i) => (id >= 0 ? i : -1)).filter((i) => i >= 0);
            noGrad(() => tidy(() => {
              const sel = torch.tensor(BigInt64Array.from(rows, BigInt), { device: b.ids.device });
              const bi = torch.arange(0, n, 1, { dtype: 'float32', device: b.ids.device }).view(n, 1, 1).expand(n, kk, 1);
              const v = [0, 1].map((i) => ({ boxes: cat([bi, b.boxes[i]], 2).view(n * kk, 5), levels: b.levels[i].reshape(n * kk) }));
              nets.forEach((net, j) => {
                g[j].push(torch.keep(boxFeatures(net, b.views[0], v[0].boxes, v[0].levels, o.space ?? 'h').indexSelect(0, sel)));
                q[j].push(torch.keep(boxFeatures(net, b.views[1], v[1].boxes, v[1].levels, o.space ?? 'h').indexSelect(0, sel)));
              });
            }));
            for (const i of rows) {
              gKeys.push(keys[i]);
              qKeys.push(keys[i]);
              gImage.push(b.images[Math.floor(i / kk)]);
              gBox.push(v1Boxes.slice(4 * i, 4 * i + 4));
            }
          } finally {
            disposeBatch(b);
          }
        }
        if (qKeys.length === 0) continue;
        // Query i's own proposal sits at gallery row i (same order), so its V1 box is gBox[i].
        nets.forEach((_, j) => tidy(() => {
          nearest(cat(q[j]), cat(g[j])).forEach((m, i) => {
            if (gKeys[m] === qKeys[i]) correct[j]++;
            if (gImage[m] === gImage[i]) correctImage[j]++;
            if (gImage[m] === gImage[i] && iou(gBox[m], gBox[i]) >= 0.5) correctObject[j]++;
          });
        }));
        queries += qKeys.length;
        gallerySum += qKeys.length * gKeys.length;
        // Padded proposals repeat: a guess is right with probability (copies of its key) / gallery.
        const copies = new Map<string, number>();
        for (const key of gKeys) copies.set(key, (copies.get(key) ?? 0) + 1);
        for (const key of qKeys) chanceSum += (copies.get(key) ?? 0) / gKeys.length;
        for (let i = 0; i < qKeys.length; i++) {
          let same = 0;
          let image = 0;
          for (let m = 0; m < gKeys.length; m++) {
            if (gImage[m] !== gImage[i]) continue;
            image++;
            if (iou(gBox[m], gBox[i]) >= 0.5) same++;
          }
          chanceObjectSum += same / gKeys.length;
          chanceImageSum += image / gKeys.length;
        }
      } finally {
        for (const t of [...q.flat(), ...g.flat()]) t.dispose();
      }
    }
  } finally {
    store.close();
    for (const n of nets) for (const t of [...n.parameters(), ...n.buffers()]) t.dispose();
  }
  if (queries === 0) throw new Error(`no proposal of ${o.proposals} survived the views of --images ${o.images}: nothing to retrieve`);
  const score = (j: number): RetrievalScore => ({
    top1: correct[j] / queries, correct: correct[j], top1Object: correctObject[j] / queries, correctObject: correctObject[j],
    top1Image: correctImage[j] / queries, correctImage: correctImage[j], queries,
  });
  return {
    pretrained: pretrained ? score(0) : null,
    random: score(pretrained ? 1 : 0),
    images: files.length,
    gallery: gallerySum / queries,
    chance: chanceSum / queries,
    chanceObject: chanceObjectSum / queries,
    chanceImage: chanceImageSum / queries,
  };
}

function disposeDeep(v: unknown): void {
  if (v instanceof Tensor) v.dispose();
  else if (Array.isArray(v)) v.forEach(disposeDeep);
  else if (v && typeof v === 'object') Object.values(v).forEach(disposeDeep);
}
