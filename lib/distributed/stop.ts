// Graceful stop of a distributed job. A stop request (Ctrl-C, SIGTERM from Slurm or torchrun, our
// launcher's message, or the launcher vanishing) reaches each worker at a different moment, but
// every rank must leave the training loop after the same step, or the others wait in a collective
// for a peer that has gone. So the request is only a local flag, and agreed() all-reduces it
// (max) once per step: all ranks see `true` after the same step, checkpoint once (rank 0 writes)
// and exit.
import { tensor } from '../torch';
import { native } from '../torch/native';
import { ProcessGroup } from './group';

/** Message our launcher sends to ask a worker to checkpoint and stop (followed by the signal it got). */
export const STOP_MESSAGE = 'soco:stop';
/** Message our launcher sends when another worker died: leave now, there is nothing to save. */
export const ABORT_MESSAGE = 'soco:abort';

/** Exit code of a worker (and of the launcher) stopped by an interrupt, as a shell reports Ctrl-C. */
export const INTERRUPTED_EXIT_CODE = 130;

export class StopSignal {
  private reason_: string | null = null;
  private signals = 0;
  private readonly cleanups: (() => void)[] = [];

  /**
   * listen: install handlers for SIGINT/SIGTERM and the launcher's messages. A second signal ends
   * the process at once (the first one is being honoured at the next step boundary). "At once"
   * does not wait for a collective in flight (a normal exit would).
   */
  constructor(readonly rank: number, listen = true) {
    if (!listen) return;
    const onSignal = (sig: NodeJS.Signals): void => {
      this.signals++;
      if (this.signals > 1) {
        process.stderr.write(`soco-train: rank ${rank}: second ${sig}, exiting now without a checkpoint\n`);
        native.dist.exitNow(INTERRUPTED_EXIT_CODE);
      }
      this.request(sig);
    };
    const onMessage = (m: unknown): void => {
      if (typeof m === 'string' && m.split(' ')[0] === STOP_MESSAGE) this.request(`${m.split(' ')[1] ?? 'stop'} to the launcher`);
      if (m === ABORT_MESSAGE) {
        process.stderr.write(`soco-train: rank ${rank}: another worker failed; stopping\n`);
        native.dist.exitNow(1);
      }
    };
    const onDisconnect = (): void => this.request('launcher gone');
    for (const sig of ['SIGINT', 'SIGTERM'] as const) {
      process.on(sig, onSignal);
      this.cleanups.push(() => process.off(sig, onSignal));
    }
    if (process.send) {
      process.on('message', onMessage);
      process.on('disconnect', onDisconnect);
      // Listening must not keep a worker that has finished alive.
      (process as unknown as { channel?: { unref(): void } }).channel?.unref();
      this.cleanups.push(() => { process.off('message', onMessage); process.off('disconnect', onDisconnect); });
    }
  }

  /** Why a stop was requested on this rank (null: it was not). */
  get reason(): string | null { return this.reason_; }
  get requested(): boolean { return this.reason_ !== null; }

  request(reason: string): void {
    if (this.reason_ === null) this.reason_ = reason;
  }

  /**
   * True on every rank when any rank has asked to stop. Call it at the same point of every step on
   * all ranks (it is a collective: one 4-byte all-reduce). Without a group it is the local flag.
   */
  async agreed(group: ProcessGroup | null): Promise<boolean> {
    if (!group || group.size === 1) return this.requested;
    const flag = tensor([this.requested ? 1 : 0], { dtype: 'int32' });
    const onDevice = flag.to(group.device);
    try {
      await group.allReduce(onDevice, 'max');
      return onDevice.item() > 0;
    } finally {
      if (onDevice !== flag) onDevice.dispose();
      flag.dispose();
    }
  }

  /** Removes the handlers (the process then reacts to signals as before). */
  dispose(): void {
    for (const c of this.cleanups.splice(0)) c();
  }
}
