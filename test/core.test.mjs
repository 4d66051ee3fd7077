// Runs every C test program under test/core/ and test/thread/ in every built flavour, one
// named test each. A C file may set its arguments and timeout in leading
// comments:
//   // mbx-test-args: --iterations 2000
//   // mbx-test-args-<flavor>: --iterations 500
//   // mbx-test-timeout: 300
//   // mbx-test-flavors: wasm wasm-asan     (skipped in the other flavours)
//   // mbx-test-requires: emscripten/proxying.h   (headers the program needs;
//      CMake does not build it where the toolchain lacks one, and it is
//      reported here as skipped, with the reason)
// C++ programs (*.cpp, <mbx/mbx.hpp>) are built as C++17 and may add
// compile-and-link flags: // mbx-test-cxxflags: -fexceptions
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { ROOT, buildDir, selectedFlavors } from '../js/build.mjs';
import { runProgram } from '../js/run-program.mjs';

// C test programs: test/core (the bare core) and test/thread (automatic
// per-pthread mailboxes).
const programs = ['core', 'thread'].flatMap((sub) => {
  const dir = path.join(ROOT, 'test', sub);
  return readdirSync(dir).filter((f) => /\.(c|cpp)$/.test(f)).sort().map((f) => path.join(dir, f));
});

function directives(file, flavor) {
  const text = readFileSync(file, 'utf8');
  const pick = (key) => {
    const m = text.match(new RegExp(`^// ${key}:(.*)$`, 'm'));
    return m ? m[1].trim() : undefined;
  };
  const args = pick(`mbx-test-args-${flavor}`) ?? pick('mbx-test-args') ?? '';
  const timeout = Number(pick('mbx-test-timeout') ?? 300);
  const only = pick('mbx-test-flavors')?.split(/\s+/).filter(Boolean);
  const skip = only && !only.includes(flavor) ? `runs only in ${only.join(', ')}` : false;
  return { args: args.split(/\s+/).filter(Boolean), timeoutMs: timeout * 1000, skip };
}

const tail = (s) => s.split('\n').slice(-25).join('\n');

// name -> reason, for the programs CMake left out (mbx-test-requires).
function skippedPrograms(flavor) {
  const file = path.join(buildDir(flavor), 'mbx-skipped-programs.txt');
  if (!existsSync(file)) return new Map();
  return new Map(readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => l.split('\t')));
}

for (const flavor of selectedFlavors([])) {
  describe(flavor, { concurrency: 2 }, () => {
    const skipped = skippedPrograms(flavor);
    for (const file of programs) {
      const name = path.basename(file).replace(/\.(c|cpp)$/, '');
      const { args, timeoutMs, skip } = directives(file, flavor);
      it(`${flavor} ${name}`, { skip: skipped.get(name) ?? skip }, async () => {
        const r = await runProgram(flavor, name, args, { timeoutMs });
        const where = `\n--- stdout ---\n${tail(r.stdout)}\n--- stderr ---\n${tail(r.stderr)}`;
        assert.equal(r.timedOut, false, `watchdog: no exit within ${timeoutMs / 1000}s${where}`);
        assert.equal(r.code, 0, `exit code ${r.code} signal ${r.signal}${where}`);
        assert.match(r.stdout, /^PASS/m, `no PASS line${where}`);
        // The summary lines are the test's evidence: show them.
        for (const line of r.stdout.trim().split('\n').slice(-3)) console.log(`    ${flavor} ${name}: ${line}`);
      });
    }
  });
}
