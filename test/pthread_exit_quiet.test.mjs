// Issue 18 item 18: pthread_exit in a program linked with the library prints
// no "completed its main entry point with an `unwind`" message (Emscripten
// 3.1.6 with assertions), in the wasm flavour.
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { buildDir, selectedFlavors } from '../js/build.mjs';
import { runProgram } from '../js/run-program.mjs';

for (const flavor of selectedFlavors([]).filter((f) => f === 'wasm')) {
  const built = existsSync(path.join(buildDir(flavor), 'pthread_exit_quiet.js'));
  it(`${flavor} pthread_exit prints no unwind message`, { skip: !built && 'not built' }, async () => {
    const r = await runProgram(flavor, 'pthread_exit_quiet', [], { timeoutMs: 60000 });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^PASS/m);
    assert.doesNotMatch(r.stderr, /completed its main entry point with an .unwind/, r.stderr);
  });
}
