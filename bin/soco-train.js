#!/usr/bin/env node
'use strict';
require('../dist/lib/cli/main.js').main(process.argv).catch((err) => {
  console.error(`soco-train: ${err && err.message ? err.message : err}`);
  process.exit(1);
});
