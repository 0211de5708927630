#!/usr/bin/env node
// Prints LibTorch's compile and link flags for binding.gyp (CMake finds them itself with find_package).
// TORCH_ROOT (a LibTorch or the pip wheel's torch/ folder) overrides Debian's system install.
'use strict';
const fs = require('fs');
const path = require('path');

const root = process.env.TORCH_ROOT;
const inc = root ? path.join(root, 'include') : '/usr/include';
const lib = root ? path.join(root, 'lib') : null;
const cuda = lib ? fs.existsSync(path.join(lib, 'libtorch_cuda.so')) : false;
// c10d's Gloo backend needs gloo's headers: LibTorch's own copy, else Debian's libgloo-dev.
const gloo = [inc, '/usr/include'].some((d) => fs.existsSync(path.join(d, 'gloo', 'algorithm.h')));
const what = process.argv[2];
const out = {
  include: [inc, path.join(inc, 'torch', 'csrc', 'api', 'include')],
  defines: [...(cuda ? ['SOCO_WITH_CUDA', 'USE_C10D_NCCL'] : []), ...(gloo ? ['USE_C10D_GLOO'] : [])],
  // Debian builds LibTorch with the C++11 ABI; the pip wheels state theirs in the ABI flag below.
  cflags: [`-D_GLIBCXX_USE_CXX11_ABI=${process.env.TORCH_CXX11_ABI ?? '1'}`],
  libs: [
    ...(lib ? [`-L${lib}`, `-Wl,-rpath,${lib}`] : []),
    '-ltorch', '-ltorch_cpu', '-lc10', ...(cuda ? ['-ltorch_cuda', '-lc10_cuda'] : []),
  ],
}[what];
if (!out) {
  console.error('usage: torch-paths.js include|defines|cflags|libs');
  process.exit(2);
}
console.log(out.join(' '));
