// Learning-rate and target-momentum schedules, stepped per iteration. Pure functions of the step,
// so a resumed run recomputes exactly the values it would have had.

/** Linear scaling rule (Goyal et al.): lr = base * batch / 256, batch = global batch size. */
export function scaledLr(baseLr: number, globalBatch: number): number {
  if (!(baseLr >= 0) || !(globalBatch > 0)) throw new RangeError(`scaledLr: need baseLr >= 0 and globalBatch > 0, got ${baseLr}, ${globalBatch}`);
  return (baseLr * globalBatch) / 256;
}

export interface LrSchedule {
  /** Peak learning rate (already scaled by batch/256). */
  peakLr: number;
  /** Iterations of linear warmup. */
  warmupIters: number;
  /** Total iterations of the run (warmup included). */
  totalIters: number;
  /**
   * Warmup starts at peakLr * warmupStartFactor and reaches peakLr at warmupIters.
   * Paper: 0 (linear warmup from zero); authors: 1/100 (GradualWarmupScheduler, multiplier 100).
   */
  warmupStartFactor: number;
  /** Floor of the cosine (authors: eta_min = 1e-6, absolute). */
  minLr: number;
}

export function checkLrSchedule(s: LrSchedule): void {
  if (!(s.peakLr >= 0)) throw new RangeError(`lr schedule: peakLr must be >= 0, got ${s.peakLr}`);
  if (!(Number.isInteger(s.totalIters) && s.totalIters >= 1)) throw new RangeError(`lr schedule: totalIters must be a positive integer, got ${s.totalIters}`);
  if (!(Number.isInteger(s.warmupIters) && s.warmupIters >= 0 && s.warmupIters <= s.totalIters))
    throw new RangeError(`lr schedule: warmupIters must be an integer in [0, totalIters=${s.totalIters}], got ${s.warmupIters}`);
  if (!(s.warmupStartFactor >= 0 && s.warmupStartFactor <= 1)) throw new RangeError(`lr schedule: warmupStartFactor must be in [0, 1], got ${s.warmupStartFactor}`);
  if (!(s.minLr >= 0 && s.minLr <= s.peakLr)) throw new RangeError(`lr schedule: minLr must be in [0, peakLr], got ${s.minLr}`);
}

/**
 * Learning rate used by iteration `it` (0-based). Warmup: peak * (f + (1 - f) * it / W) for it <= W
 * (the authors' formula base/m * ((m - 1) * it / W + 1) with f = 1/m); then cosine from peak at W
 * to minLr at totalIters: minLr + (peak - minLr) * (1 + cos(pi * (it - W) / (T - W))) / 2.
 */
export function lrAt(it: number, s: LrSchedule): number {
  const W = s.warmupIters;
  if (W > 0 && it <= W) return s.peakLr * (s.warmupStartFactor + ((1 - s.warmupStartFactor) * it) / W);
  const span = s.totalIters - W;
  if (span <= 0) return s.peakLr;
  const t = Math.min(it - W, span);
  return s.minLr + ((s.peakLr - s.minLr) * (1 + Math.cos((Math.PI * t) / span))) / 2;
}

/**
 * Target EMA momentum for update number k (0-based) of K (BYOL, cosine to 1):
 *   tau = 1 - (1 - tau0) * (cos(pi * k / K) + 1) / 2.
 */
export function tauAt(k: number, tau0: number, totalSteps: number): number {
  if (!(tau0 >= 0 && tau0 <= 1)) throw new RangeError(`tau0 must be in [0, 1], got ${tau0}`);
  if (!(totalSteps >= 1)) throw new RangeError(`tau schedule: totalSteps must be >= 1, got ${totalSteps}`);
  return 1 - ((1 - tau0) * (Math.cos((Math.PI * Math.min(k, totalSteps)) / totalSteps) + 1)) / 2;
}
