// The one place that loads the addon. Everything else imports lib/torch (or this module's
// `native` for the domain bindings that are not tensor ops: image decode, proposals, c10d).
import * as path from 'path';

export const packageRoot = path.resolve(__dirname, '..', '..', '..');
/** The addon's build folder: build/, or SOCO_BUILD_DIR for a second build beside it (e.g. the PyTorch 2.x lane's build-torch2/). */
export const buildDir = path.resolve(packageRoot, process.env.SOCO_BUILD_DIR ?? 'build');

/** Raised when the compiled addon cannot be loaded; the message names the fix. */
export class NativeLoadError extends Error {
  override name = 'NativeLoadError';
}

/** The fix for an addon load failure, from the loader's message. */
export function explainLoadError(err: Error): string {
  const msg = err.message;
  const setup = `run \`bash ${path.join(packageRoot, 'scripts', 'setup.sh')}\``;
  if (/No native build was found/.test(msg))
    return `the soco-train addon is not built. Fix: ${setup} (or \`npm run build:native\`).`;
  const noBuild = /Cannot find module '(.*)\/Release\/soco_train\.node'/.exec(msg);
  if (noBuild)
    return `no addon is built in ${noBuild[1]} (SOCO_BUILD_DIR). Fix: build it there (\`npx cmake-js compile --out ${noBuild[1]}\`; ` +
      'for the PyTorch 2.x lane `bash scripts/torch2.sh`), or unset SOCO_BUILD_DIR.';
  const lib = /(lib(?:torch\w*|c10\w*|gloo\w*)\.so[\w.]*): cannot open shared object file/.exec(msg);
  if (lib)
    return `LibTorch is missing (${lib[1]} not found). Fix: ${setup}, which installs Debian's libtorch-dev, ` +
      `or point LD_LIBRARY_PATH at the LibTorch the addon was built against.`;
  const codec = /(lib(?:jpeg|png16|webp|deflate|z)\.so[\w.]*): cannot open shared object file/.exec(msg);
  if (codec)
    return `an image library is missing (${codec[1]} not found). Fix: ${setup}, which installs ` +
      `libjpeg-dev, libpng-dev, libwebp-dev and libdeflate-dev.`;
  if (/undefined symbol/.test(msg))
    return `the addon was built against a different LibTorch than the one loaded (${msg.split('\n')[0]}). ` +
      `Fix: rebuild with \`npm run build:native\` against the LibTorch you run with.`;
  return `${msg}. Fix: ${setup} and \`npm run build:native\`.`;
}

function load(): any {
  // OpenMP threads that spin between ops steal the cores the loader and the next op need
  // (measured: training steps 5-10x slower on 2 cores). libgomp reads this when LibTorch loads,
  // so it is set here, before the addon; a user's own setting wins.
  process.env.OMP_WAIT_POLICY ??= 'PASSIVE';
  try {
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    return process.env.SOCO_BUILD_DIR ? require(path.join(buildDir, 'Release', 'soco_train.node')) : require('node-gyp-build')(packageRoot);
  } catch (err) {
    throw new NativeLoadError(`cannot load the soco-train native addon: ${explainLoadError(err as Error)}`);
  }
}

export const native = load();
