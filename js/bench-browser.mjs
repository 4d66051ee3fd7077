// Browser rows of the benchmark: the same program (test/browser/
// bench_roundtrip.c, built with the wasm flavour) under Node and on a page
// in headless Chromium, with Atomics.waitAsync and with it hidden (mbx then
// posts wakeups), repetitions interleaved, medians compared:
//   callback  main -> event-loop worker -> main (mbx_proxy_callback)
//   sync      pthread -> main, served from main's event loop (mbx_proxy_sync)
// Times are microseconds per round trip; ratio = browser / Node (> 1: the
// browser is slower).
// Usage: node js/bench-browser.mjs [--reps N] [--ms N] [--json] [--no-build]
//   (another toolchain: `. /opt/emscripten-current/env.sh` first)
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ROOT, buildDir, buildFlavor, emscripten, nodeArgs, toolEnv } from './build.mjs';
import { Browser, findChromium, runInPage } from './browser.mjs';
import { startServer } from './serve.mjs';

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

function parse(out, where) {
  const m = out.match(/^BENCH callback_us=([\d.]+) sync_us=([\d.]+) /m);
  if (!m) throw new Error(`no BENCH line from ${where}:\n${out}`);
  return { callback: Number(m[1]), sync: Number(m[2]) };
}

// Resolves to [{ name, unit, node, browser, ratio }].
export async function runBrowserBench({ reps = 5, ms = 500, build = true, log = console.log } = {}) {
  if (!findChromium()) throw new Error('no Chromium (tools/setup-debian.sh installs it)');
  if (build) buildFlavor('wasm');
  const prog = path.relative(ROOT, path.join(buildDir('wasm'), 'browser', 'bench_roundtrip.js')).split(path.sep).join('/');
  const server = await startServer();
  const browser = await Browser.launch();
  const samples = {}; // `${kind}/${mode}/${env}` -> [us]
  const add = (mode, env, r) => {
    for (const kind of ['callback', 'sync']) (samples[`${kind}/${mode}/${env}`] ??= []).push(r[kind]);
  };
  try {
    for (let rep = 0; rep < reps; rep++) {
      for (const hide of [false, true]) {
        const args = ['--ms', String(ms), ...(hide ? ['--hide-wait-async'] : [])];
        const mode = hide ? 'no waitAsync' : 'waitAsync';
        const n = spawnSync(process.execPath, [...nodeArgs(), prog, ...args],
          { cwd: ROOT, env: toolEnv(), encoding: 'utf8', timeout: 120000 });
        add(mode, 'node', parse(n.stdout ?? '', `node ${prog}`));
        const b = await runInPage(browser, server.origin, prog, { args, timeoutMs: 120000 });
        if (b.exit !== '0') throw new Error(`page run failed (${b.exit}):\n${b.out}`);
        add(mode, 'browser', parse(b.out, 'the page'));
        log(`rep ${rep + 1}/${reps} ${mode}: node ${JSON.stringify(parse(n.stdout, ''))} browser ${JSON.stringify(parse(b.out, ''))}`);
      }
    }
  } finally {
    await browser.close();
    await server.close();
  }
  const rows = [];
  for (const kind of ['callback', 'sync']) {
    for (const mode of ['waitAsync', 'no waitAsync']) {
      const node = median(samples[`${kind}/${mode}/node`]);
      const br = median(samples[`${kind}/${mode}/browser`]);
      rows.push({
        name: `${kind === 'callback' ? 'callback main -> event-loop worker -> main' : 'sync pthread -> main'}, ${mode}`,
        unit: 'us/round trip', node, browser: br, ratio: br / node,
      });
    }
  }
  return rows;
}

// Runs the rows and prints them as a table (js/bench.mjs --browser calls this).
export async function printBrowserRows({ reps = 5, ms = 500, build = true, log = console.log } = {}) {
  const rows = await runBrowserBench({ reps, ms, build, log });
  const head = ['benchmark', 'unit', 'node', 'browser', 'browser/node'];
  const table = rows.map((r) => [r.name, r.unit, r.node.toFixed(1), r.browser.toFixed(1), r.ratio.toFixed(2)]);
  const w = head.map((h, i) => Math.max(h.length, ...table.map((t) => t[i].length)));
  const line = (r) => r.map((c, i) => c.padEnd(w[i])).join('  ');
  log(`browser rows, emcc ${emscripten().version}, medians of ${reps} interleaved repetitions`);
  log(line(head));
  for (const t of table) log(line(t));
  return rows;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  const argv = process.argv.slice(2);
  const val = (f, d) => (argv.includes(f) ? Number(argv[argv.indexOf(f) + 1]) : d);
  const opts = { reps: val('--reps', 5), ms: val('--ms', 500), build: !argv.includes('--no-build') };
  if (argv.includes('--json')) {
    const rows = await runBrowserBench({ ...opts, log: console.error });
    console.log(JSON.stringify({ toolchain: `emcc ${emscripten().version}`, browser_rows: rows }));
  } else {
    await printBrowserRows(opts);
  }
}
