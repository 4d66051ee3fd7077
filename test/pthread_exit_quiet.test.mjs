// Issue 18 item 18: Emscripten 3.1.6 built with assertions prints "Pthread
// 0x0 completed its main entry point with an `unwind`" at every
// pthread_exit, with or without this library (its worker.js prints it for
// any 'unwind'; checked with a plain program). Pinned: the library adds
// none of its own (at most one per pthread_exit; the program calls it 3
// times). Documented in <mbx/thread.h>.
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { buildDir, selectedFlavors } from '../js/build.mjs';
import { runProgram } from '../js/run-program.mjs';

for (const flavor of selectedFlavors([]).filter((f) => f === 'wasm')) {
  const built = existsSync(path.join(buildDir(flavor), 'pthread_exit_quiet.js'));
  it(`${flavor} pthread_exit: the library adds no unwind message`, { skip: !built && 'not built' }, async () => {
    const r = await runProgram(flavor, 'pthread_exit_quiet', [], { timeoutMs: 60000 });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^PASS/m);
    const messages = r.stderr.match(/completed its main entry point with an .unwind/g) ?? [];
    assert.ok(messages.length <= 3, r.stderr);
  });
}
