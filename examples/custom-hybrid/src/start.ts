// `npm start [backend]`: runs the example, e.g. `npm start -- cpu`.
import type { BackendName } from '@slmkit/core';
import { main } from './main.js';

main({ backend: process.argv[2] as BackendName | undefined }).catch((e: unknown) => {
  console.error(e instanceof Error ? e.message : e);
  process.exitCode = 1;
});
