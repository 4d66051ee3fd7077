// Runs the example programs of examples/ (except demo.c, which
// test/demo.test.mjs checks) in every built flavour, as tests: each must
// exit 0 and print a PASS line. Leading comments set arguments and timeout
// as for test/core.test.mjs (// mbx-test-args[-<flavor>]:, // mbx-test-timeout:,
// // mbx-test-flavors:).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { ROOT, selectedFlavors } from '../js/build.mjs';
import { runProgram } from '../js/run-program.mjs';

const dir = path.join(ROOT, 'examples');
const programs = readdirSync(dir).filter((f) => f.endsWith('.c') && f !== 'demo.c').sort();

function directives(file, flavor) {
  const text = readFileSync(path.join(dir, file), 'utf8');
  const pick = (key) => text.match(new RegExp(`^// ${key}:(.*)$`, 'm'))?.[1].trim();
  const args = pick(`mbx-test-args-${flavor}`) ?? pick('mbx-test-args') ?? '';
  const only = pick('mbx-test-flavors')?.split(/\s+/).filter(Boolean);
  return {
    args: args.split(/\s+/).filter(Boolean),
    timeoutMs: Number(pick('mbx-test-timeout') ?? 300) * 1000,
    skip: only && !only.includes(flavor) ? `runs only in ${only.join(', ')}` : false,
  };
}

const tail = (s) => s.split('\n').slice(-25).join('\n');

for (const flavor of selectedFlavors([])) {
  describe(`${flavor} examples`, { concurrency: 1 }, () => {
    for (const file of programs) {
      const name = path.basename(file, '.c');
      const { args, timeoutMs, skip } = directives(file, flavor);
      it(`${flavor} example ${name}`, { skip }, async () => {
        const r = await runProgram(flavor, name, args, { timeoutMs });
        const where = `\n--- stdout ---\n${tail(r.stdout)}\n--- stderr ---\n${tail(r.stderr)}`;
        assert.equal(r.timedOut, false, `watchdog: no exit within ${timeoutMs / 1000}s${where}`);
        assert.equal(r.code, 0, `exit code ${r.code} signal ${r.signal}${where}`);
        assert.match(r.stdout, /^PASS/m, `no PASS line${where}`);
        if (name === 'backend') assert.match(r.stdout, / lost=0 calls_live=0$/m, where);
        if (name === 'loader') assert.match(r.stdout, / violations=0$/m, where);
        for (const line of r.stdout.trim().split('\n').slice(-3)) console.log(`    ${flavor} ${name}: ${line}`);
      });
    }
  });
}
