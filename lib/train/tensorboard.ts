// TensorBoard event files in OUT/tb/, written beside metrics.jsonl: one Event (step = iteration,
// wall time) per logged iteration holding every scalar of the record, so `tensorboard --logdir OUT`
// shows the run. The file format is TensorFlow's TFRecord (length, masked CRC32C, payload, masked
// CRC32C) around Event protocol buffers (tensorboard/compat/proto/event.proto, the part scalars
// use); protobufjs encodes them and @aws-crypto/crc32c checksums them.
//
// One file per run: a resumed run drops the events after its checkpoint's step from the file and
// appends to it, so the steps stay in order and the run reads as one curve in any reader.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { crc32c } from '@aws-crypto/crc32c';
import * as protobuf from 'protobufjs';
import { MetricRecord } from './metrics';

export const TENSORBOARD_DIR = 'tb';

// simple_value sits in the `value` oneof, as in summary.proto: a member of a oneof is written even
// when it is 0 (a plain proto3 float of 0 would be left out, and readers would drop the value).
const EVENT_PROTO = `
syntax = "proto3";
package tensorboard;
message Event {
  double wall_time = 1;
  int64 step = 2;
  oneof what { string file_version = 3; Summary summary = 5; }
}
message Summary {
  message Value {
    string tag = 1;
    oneof value { float simple_value = 2; }
  }
  repeated Value value = 1;
}`;
const Event = protobuf.parse(EVENT_PROTO, { keepCase: true }).root.lookupType('tensorboard.Event');

/**
 * The scalars of one metrics record under TensorBoard tags (Detectron2-style groups): loss/total
 * and loss/<pair>, lr, tau, throughput/images_per_sec, time/sec_per_iter, time/data_wait_frac,
 * embedding_std, memory/{rss,peak_rss,device}_mib, amp/loss_scale.
 */
export function tensorboardScalars(r: MetricRecord): Record<string, number> {
  const s: Record<string, number> = { 'loss/total': r.loss };
  for (const [pair, v] of Object.entries(r.pairs ?? {})) s[`loss/${pair}`] = v;
  Object.assign(s, {
    lr: r.lr, tau: r.tau, 'throughput/images_per_sec': r.imagesPerSec, 'time/sec_per_iter': r.secPerIter,
    'time/data_wait_frac': r.dataWaitFrac, embedding_std: r.embeddingStd, 'memory/rss_mib': r.memoryMiB,
  });
  if (r.peakMemoryMiB !== undefined) s['memory/peak_rss_mib'] = r.peakMemoryMiB;
  if (r.deviceMemoryMiB !== undefined) s['memory/device_mib'] = r.deviceMemoryMiB;
  if (r.lossScale !== undefined) s['amp/loss_scale'] = r.lossScale;
  return s;
}

const MASK_DELTA = 0xa282ead8;
/** TFRecord's masked CRC32C: rotate right by 15, add a constant (mod 2^32). */
function maskedCrc(b: Uint8Array): number {
  const c = crc32c(b);
  return (((c >>> 15) | (c << 17)) + MASK_DELTA) >>> 0;
}

function record(payload: Uint8Array): Buffer {
  const head = Buffer.alloc(12);
  head.writeBigUInt64LE(BigInt(payload.length), 0);
  head.writeUInt32LE(maskedCrc(head.subarray(0, 8)), 8);
  const tail = Buffer.alloc(4);
  tail.writeUInt32LE(maskedCrc(payload), 0);
  return Buffer.concat([head, payload, tail]);
}

/**
 * The Event payloads of an event file, in order. A record cut short at the end (a run killed
 * mid-write) ends the list; a checksum that does not match is corruption and throws naming the file.
 */
export function readEventRecords(file: string): Buffer[] {
  const b = fs.readFileSync(file);
  const out: Buffer[] = [];
  let at = 0;
  while (at + 12 <= b.length) {
    if (b.readUInt32LE(at + 8) !== maskedCrc(b.subarray(at, at + 8))) throw new Error(`${file}: corrupt event record at byte ${at} (length checksum)`);
    const n = Number(b.readBigUInt64LE(at));
    if (at + 12 + n + 4 > b.length) break;
    const payload = b.subarray(at + 12, at + 12 + n);
    if (b.readUInt32LE(at + 12 + n) !== maskedCrc(payload)) throw new Error(`${file}: corrupt event record at byte ${at} (data checksum)`);
    out.push(payload);
    at += 12 + n + 4;
  }
  return out;
}

function stepOf(payload: Buffer): number {
  return (Event.toObject(Event.decode(payload), { longs: Number }) as { step?: number }).step ?? 0;
}

/**
 * Writes OUT/tb/events.out.tfevents.<time>.<host>: a fresh run (resumeStep 0) replaces what the
 * folder held; a run resumed at step s keeps the events up to s and appends after them.
 */
export class TensorBoardWriter {
  readonly dir: string;
  readonly file: string;
  private fd: number;

  constructor(outDir: string, resumeStep = 0) {
    this.dir = path.join(outDir, TENSORBOARD_DIR);
    fs.mkdirSync(this.dir, { recursive: true });
    const existing = fs.readdirSync(this.dir).filter((name) => name.includes('tfevents')).sort();
    if (resumeStep > 0 && existing.length) {
      for (const name of existing) {
        const f = path.join(this.dir, name);
        const kept = readEventRecords(f).filter((p) => stepOf(p) <= resumeStep);
        // Not named *tfevents*: a reader watching the folder never sees the half-written copy.
        const tmp = path.join(this.dir, 'resume.tmp');
        fs.writeFileSync(tmp, Buffer.concat(kept.map(record)));
        fs.renameSync(tmp, f);
      }
      this.file = path.join(this.dir, existing[existing.length - 1]);
      this.fd = fs.openSync(this.file, 'a');
      return;
    }
    for (const name of existing) fs.rmSync(path.join(this.dir, name));
    this.file = path.join(this.dir, `events.out.tfevents.${Math.floor(Date.now() / 1000)}.${os.hostname()}`);
    this.fd = fs.openSync(this.file, 'w');
    this.append({ wall_time: Date.now() / 1000, step: 0, file_version: 'brain.Event:2' });
  }

  /** One event holding the record's scalars at step r.iter. */
  write(r: MetricRecord): void {
    const value = Object.entries(tensorboardScalars(r)).map(([tag, v]) => ({ tag, simple_value: v }));
    this.append({ wall_time: r.time / 1000, step: r.iter, summary: { value } });
  }

  private append(event: Record<string, unknown>): void {
    fs.writeSync(this.fd, record(Event.encode(Event.fromObject(event)).finish()));
  }

  close(): void {
    if (this.fd >= 0) fs.closeSync(this.fd);
    this.fd = -1;
  }
}
