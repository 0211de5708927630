// Tests that need what this machine or build lacks (a GPU, NCCL) still register, and show as
// pending with the reason (mocha's this.skip()), so every run says how many were not run. Use
// describeIf/itIf with one of the reasons below (or your own) instead of an `if` around describe().
import * as torch from '../lib/torch';

/** Why CUDA tests cannot run here, or null where LibTorch sees a GPU. */
export const noCuda: string | null = torch.cuda.isAvailable()
  ? null
  : torch.buildInfo().cuda ? 'needs a CUDA GPU; none is visible' : 'needs a CUDA build of LibTorch and a GPU';

/** Why tests of the NCCL process group cannot run here (they need NCCL compiled in and a GPU), or null. */
export const noNccl: string | null = torch.buildInfo().nccl === null
  ? 'needs soco-train built against a LibTorch with NCCL, and a GPU'
  : noCuda;

/** describe() whose tests (and nested suites) are pending with `missing` as the reason when it is not null. */
export function describeIf(missing: string | null, title: string, fn: (this: Mocha.Suite) => void): Mocha.Suite {
  if (missing === null) return describe(title, fn);
  return describe(`${title} (pending: ${missing})`, function () {
    // Registered first, so the suite's own before() hooks (which would need the hardware) never run.
    before(function () { this.skip(); });
    fn.call(this);
  });
}

/** it() that is pending with `missing` as the reason when it is not null. */
export function itIf(missing: string | null, title: string, fn: Mocha.Func): Mocha.Test {
  if (missing === null) return it(title, fn);
  return it(`${title} (pending: ${missing})`, function () { this.skip(); });
}
