// Builds the wasm flavour and runs the demo under Node.
import { spawnSync } from 'node:child_process';
import { buildFlavor } from './build.mjs';
import { programCommand } from './run-program.mjs';

buildFlavor('wasm');
const { cmd, args } = programCommand('wasm', 'demo');
const r = spawnSync(cmd, args, { stdio: 'inherit' });
process.exit(r.status ?? 1);
