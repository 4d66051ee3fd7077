// The whole test suite: build every flavour, then run the Node specs under
// test/ with Node's built-in test runner.
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { ROOT, buildAll, toolEnv } from './build.mjs';

const flavors = buildAll();
const specs = readdirSync(path.join(ROOT, 'test'))
  .filter((f) => f.endsWith('.test.mjs'))
  .map((f) => path.join('test', f));
const r = spawnSync(process.execPath, ['--test', '--test-reporter=spec', ...specs], {
  stdio: 'inherit', cwd: ROOT, env: { ...toolEnv(), MBX_FLAVORS: flavors.join(',') },
});
process.exit(r.status ?? 1);
