// Runs the native C tests under valgrind (memcheck): no invalid access, no
// definite leak. Smaller workloads than the plain run: valgrind serialises
// threads and is about 50x slower.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { selectedFlavors } from '../js/build.mjs';
import { runProgram } from '../js/run-program.mjs';

const haveValgrind = spawnSync('sh', ['-c', 'command -v valgrind'], { stdio: 'ignore' }).status === 0;
const enabled = selectedFlavors([]).includes('native');

const VALGRIND = ['valgrind', '--quiet', '--error-exitcode=9', '--leak-check=full',
  '--errors-for-leak-kinds=definite', '--show-leak-kinds=definite'];

const workloads = {
  stress_accounting: ['--iterations', '300', '--seed', '21'],
  handles: ['--forged', '20000'],
  oom_injection: ['--messages', '5000'],
  quarantine_bound: ['--cycles', '20000'],
  wait_wake: ['--rounds', '200', '--idle-cpu', '0'],
};

describe('valgrind', { concurrency: 2, skip: !enabled && 'native flavour not built' }, () => {
  for (const [name, args] of Object.entries(workloads)) {
    it(`valgrind ${name}`, { skip: !haveValgrind && 'valgrind not installed' }, async () => {
      const r = await runProgram('native', name, args, { wrapper: VALGRIND });
      const where = `\n${r.stderr.split('\n').slice(-30).join('\n')}`;
      assert.equal(r.timedOut, false, `watchdog${where}`);
      assert.equal(r.code, 0, `exit ${r.code}${where}`);
      assert.match(r.stdout, /^PASS/m);
    });
  }
});
