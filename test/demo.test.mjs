// The demo (README's first command) keeps its promise: its summary line
// checks the library's counters against the sends the demo saw accepted
// and reports nothing lost, natively and as wasm.
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { selectedFlavors } from '../js/build.mjs';
import { runProgram } from '../js/run-program.mjs';

for (const flavor of selectedFlavors([]).filter((f) => f === 'native' || f === 'wasm')) {
  it(`${flavor} demo`, async () => {
    const r = await runProgram(flavor, 'demo', [], { timeoutMs: 120000 });
    assert.equal(r.timedOut, false, 'watchdog');
    assert.equal(r.code, 0, r.stdout + r.stderr);
    const m = r.stdout.match(/^sent=(\d+) run=(\d+) canceled=(\d+) rejected=(\d+) lost=(-?\d+)$/m);
    assert.ok(m, `no summary line in:\n${r.stdout}`);
    const [sent, run, canceled, rejected, lost] = m.slice(1).map(Number);
    assert.equal(lost, 0);
    assert.equal(sent, run + canceled);
    assert.ok(run > 0 && canceled > 0 && rejected > 0, 'demo exercised run, cancel and reject');
    console.log(`    ${flavor} demo: ${m[0]}`);
  });
}

// The C++ example (examples/cpp_worker.cpp, <mbx/mbx.hpp>): every answer
// arrives, and the work sent behind a worker's stop is accounted for.
for (const flavor of selectedFlavors([]).filter((f) => f === 'native' || f === 'wasm')) {
  it(`${flavor} cpp_worker example`, async () => {
    const r = await runProgram(flavor, 'cpp_worker', [], { timeoutMs: 120000 });
    assert.equal(r.timedOut, false, 'watchdog');
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /^worker 0 saw "the" 2 times$/m);
    assert.match(r.stdout, /^worker 1 knows 3 words$/m);
    assert.match(r.stdout, /^callback on main: "mat" 1 time\(s\)$/m);
    const m = r.stdout.match(/^after stop: (\d+) ran, (\d+) canceled on the worker, (\d+) refused \(of 3\)/m);
    assert.ok(m, r.stdout);
    assert.equal(m.slice(1).map(Number).reduce((a, b) => a + b), 3);
    console.log(`    ${flavor} cpp_worker: ${m[0]}`);
  });
}
