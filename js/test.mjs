// The whole test suite, a thin layer over CTest: builds the selected
// flavours (js/build.mjs), runs each flavour's C tests with ctest (what each
// test runs and when it passes is in test/CMakeLists.txt), then the Node
// specs under test/ (Spin model, valgrind, packaging, demo, ...) with Node's
// test runner. Exits non-zero if anything failed.
// Usage: node js/test.mjs   (MBX_FLAVORS=native,wasm for some flavours)
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { ROOT, buildAll, buildDir, toolEnv } from './build.mjs';

// Runs a command with its output passed through; resolves to its exit
// status and its stdout.
function run(cmd, args, env = toolEnv()) {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d) => { process.stdout.write(d); out += d; });
    child.on('error', (e) => { console.error(`${cmd}: ${e.message}`); });
    child.on('close', (code, signal) => resolve({ ok: code === 0, code: code ?? signal, out }));
  });
}

// Each test's output, from the log of the ctest run that just ended.
function testOutputs(dir) {
  const log = path.join(dir, 'Testing', 'Temporary', 'LastTest.log');
  if (!existsSync(log)) return [];
  const re = /^\d+\/\d+ Test: (.+)$[\s\S]*?^Output:\n-+\n([\s\S]*?)<end of output>$/gm;
  return [...readFileSync(log, 'utf8').matchAll(re)]
    .map(([, name, output]) => ({ name, lines: output.trim().split('\n') }))
    .sort((a, b) => a.name.localeCompare(b.name));
}

const flavors = buildAll();
const results = [];
for (const flavor of flavors) {
  const dir = buildDir(flavor);
  console.log(`\n=== ctest ${flavor}: ${path.relative(ROOT, dir)}`);
  // Passed tests' output in full (ctest keeps only 1 KB by default).
  const r = await run('ctest', ['--test-dir', dir, '-j2', '--output-on-failure',
    '--test-output-size-passed', '100000', '--test-output-size-failed', '1000000']);
  // The evidence of each test: its summary lines (or why it was skipped).
  for (const { name, lines } of testOutputs(dir)) {
    const tail = lines[0].startsWith('SKIPPED: ') ? lines.slice(0, 1) : lines.slice(-3);
    for (const line of tail) console.log(`    ${flavor} ${name}: ${line}`);
  }
  const summary = r.out.match(/^\d+% tests passed.*$/m)?.[0] ?? `ctest exited with ${r.code}`;
  results.push({ what: `ctest ${path.basename(dir)}`, ok: r.ok, summary });
}

// Every Node spec: test/**/*.test.mjs.
const specs = readdirSync(path.join(ROOT, 'test'), { recursive: true })
  .filter((f) => f.endsWith('.test.mjs')).sort().map((f) => path.join('test', f));
console.log(`\n=== node --test ${specs.join(' ')}`);
const r = await run(process.execPath, ['--test', '--test-reporter=spec', ...specs],
  { ...toolEnv(), MBX_FLAVORS: flavors.join(',') });
const count = (key) => r.out.match(new RegExp(`^\\S* ?${key} (\\d+)$`, 'm'))?.[1] ?? '?';
results.push({ what: 'node specs', ok: r.ok,
  summary: `${count('pass')} passed, ${count('fail')} failed, ${count('skipped')} skipped out of ${count('tests')}` });

console.log('\n=== summary');
for (const { what, ok, summary } of results) console.log(`${ok ? 'ok    ' : 'FAILED'} ${what}: ${summary}`);
process.exit(results.every((x) => x.ok) ? 0 : 1);
