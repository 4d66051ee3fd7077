// Benchmarks (test/bench): builds the benchmark programs at -O2 into
// build/bench-wasm-<emcc version>/ and build/bench-native/, runs them with
// the contenders interleaved inside each run and repeated, and prints the
// medians and ratios (ratio > 1 always means mbx is better).
//
// Usage: node js/bench.mjs [--json] [--save FILE] [--reps N] [--quick]
//                          [--toolchain-env path/to/env.sh]... [--no-native] [--browser]
//   --browser        also the browser rows of js/bench-browser.mjs
//   --toolchain-env  also run with the Emscripten that this script (sourced
//                    by sh) activates, e.g. /opt/emscripten-current/env.sh
//   --save FILE      also write the JSON object to FILE
//   --json           print exactly one JSON object on stdout:
//                    {"benchmarks": [{name, unit, ours, baseline,
//                    baseline_name, ratio}]}; progress goes to stderr
// Not part of the test suite: js/test.mjs neither builds nor runs this.
import { spawnSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { ROOT, toolEnv } from './build.mjs';

const argv = process.argv.slice(2);
const json = argv.includes('--json');
const quick = argv.includes('--quick');
const reps = Number(valueOf('--reps') ?? (quick ? 3 : 9));
const extraEnvs = argv.flatMap((a, i) => (a === '--toolchain-env' ? [argv[i + 1]] : []));
const log = (...a) => (json ? console.error : console.log)(...a);
const started = Date.now();

function valueOf(flag) {
  const i = argv.indexOf(flag);
  return i >= 0 ? argv[i + 1] : undefined;
}

// Environment of the active toolchain, or of one activated by an env script.
function envFor(script) {
  if (!script) return toolEnv();
  const r = spawnSync('sh', ['-c', `. "${script}" && env -0`], { env: process.env, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`cannot source ${script}`);
  const env = {};
  for (const kv of r.stdout.split('\0')) {
    const i = kv.indexOf('=');
    if (i > 0) env[kv.slice(0, i)] = kv.slice(i + 1);
  }
  return { ...env, NODE_PATH: toolEnv().NODE_PATH };
}

function run(cmd, args, env, opts = {}) {
  const r = spawnSync(cmd, args, { env, cwd: ROOT, encoding: 'utf8', maxBuffer: 1 << 26, ...opts });
  if (r.error) throw r.error;
  if (r.status !== 0) {
    throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}):\n${r.stdout ?? ''}${r.stderr ?? ''}`);
  }
  return r.stdout ?? '';
}

function build(kind, env) {
  const wasm = kind === 'wasm';
  const version = wasm
    ? run('emcc', ['-dumpversion'], env).trim().replace(/-git$/, '')
    : run('cc', ['-dumpfullversion'], env).trim();
  const label = wasm ? `emcc ${version}` : `native cc ${version}`;
  const dir = path.join(ROOT, 'build', wasm ? `bench-wasm-${version}` : 'bench-native');
  const t0 = Date.now();
  if (!existsSync(path.join(dir, 'build.ninja'))) {
    const args = ['-S', ROOT, '-B', dir, '-G', 'Ninja', '-DMBX_BUILD_BENCH=ON', '-DMBX_BUILD_TESTS=OFF',
      '-DCMAKE_BUILD_TYPE=Release', '-DCMAKE_C_FLAGS_RELEASE=-O2 -DNDEBUG'];
    if (wasm) run('emcmake', ['cmake', ...args], env);
    else run('cmake', args, env);
  }
  run('cmake', ['--build', dir], env);
  log(`built ${label} in ${((Date.now() - t0) / 1000).toFixed(1)}s (${dir})`);
  return { wasm, label, dir: path.join(dir, 'test', 'bench'), env };
}

// Runs one program; returns its RESULT lines as {workload, contender, value, unit}.
function runProgram(tc, name, args) {
  const cmd = tc.wasm ? process.execPath : path.join(tc.dir, name);
  const full = tc.wasm ? ['--no-experimental-fetch', path.join(tc.dir, `${name}.js`), ...args] : args;
  const out = run(cmd, full, tc.env, { timeout: 600000 });
  if (!/^DONE$/m.test(out)) throw new Error(`${name} did not finish:\n${out}`);
  for (const l of out.split('\n')) if (l.startsWith('INFO ')) log(`[${tc.label}] ${name}: ${l.slice(5)}`);
  return out.split('\n').filter((l) => l.startsWith('RESULT ')).map((l) => {
    const [, workload, contender, value, unit] = l.split(' ');
    return { workload, contender, value: Number(value), unit };
  });
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

function measure(tc) {
  const samples = [];
  const t0 = Date.now();
  log(`[${tc.label}] proxy/round-trip workloads, ${reps} reps...`);
  samples.push(...runProgram(tc, 'bench_proxy', ['--reps', String(reps), ...(quick ? ['--msgs', '50000', '--rts', '500'] : [])]));
  log(`[${tc.label}] thread lifetime, ${reps} interleaved process pairs...`);
  const threads = quick ? '300' : '1000';
  for (let i = 0; i < reps; i++) {
    const order = i % 2 ? ['bench_thread_plain', 'bench_thread'] : ['bench_thread', 'bench_thread_plain'];
    for (const p of order) {
      samples.push(...runProgram(tc, p, ['--threads', threads]).filter((s) => s.workload === 'thread-lifetime'));
    }
  }
  log(`[${tc.label}] 10,000-thread churn (memory)...`);
  const churn = quick ? '2000' : '10000';
  for (const p of ['bench_thread', 'bench_thread_plain']) {
    samples.push(...runProgram(tc, p, ['--threads', churn]).filter((s) => s.workload !== 'thread-lifetime'));
  }
  if (!tc.wasm) {
    log(`[${tc.label}] send+receive vs mutex ring, ${reps} reps...`);
    samples.push(...runProgram(tc, 'bench_queue', ['--reps', String(reps), ...(quick ? ['--msgs', '200000'] : [])]));
  }
  log(`[${tc.label}] measured in ${((Date.now() - t0) / 1000).toFixed(0)}s`);
  const med = new Map();
  for (const s of samples) {
    const key = `${s.workload}/${s.contender}`;
    if (!med.has(key)) med.set(key, { unit: s.unit, values: [] });
    med.get(key).values.push(s.value);
  }
  for (const v of med.values()) v.median = median(v.values);
  return med;
}

// Targets from issue 5 (reported, never enforced).
const TARGETS = {
  'async-throughput-2p': { min: 3, text: '>= 3x' },
  'sync-rt-event-loop': { min: 1.3, text: '>= 1.3x' },
  'sync-rt-mbx-wait-vs-event-loop-sync': { min: 20, text: '>= 20x' },
  'thread-lifetime': { min: 1 / 1.1, text: '<= 10% overhead' },
  'retired-thread-bytes': { min: 1, text: '<= 128 B' },
};

function entries(tc, med) {
  const out = [];
  const get = (w, c) => med.get(`${w}/${c}`);
  // higher: throughput (ours/baseline); lower: latency, CPU, bytes (baseline/ours).
  const add = (name, w, c, bw, bc, baselineName, higher, floor = 0) => {
    const a = get(w, c), b = get(bw, bc);
    if (!a || !b) return;
    const ours = a.median, base = b.median;
    const ratio = higher ? ours / base : Math.max(base, floor) / Math.max(ours, floor);
    out.push({ name: `${name} [${tc.label}]`, unit: a.unit, ours, baseline: base, baseline_name: baselineName,
      ratio: Number(ratio.toFixed(3)), key: name });
  };
  const proxy = [...med.keys()].some((k) => k.includes('upstream-proxy')) ? 'upstream' : 'legacy';
  for (const p of [1, 2, 4]) {
    const w = `async-throughput-${p}p`;
    add(w, w, 'mbx', w, `${proxy}-proxy-async`, `${proxy} emscripten_proxy_async`, true);
  }
  add('sync-rt-event-loop', 'sync-rt-event-loop', 'mbx', 'sync-rt-event-loop', `${proxy}-proxy-sync`,
    `${proxy} emscripten_proxy_sync`, false);
  add('sync-rt-event-loop-mbx-send', 'sync-rt-event-loop', 'mbx-send', 'sync-rt-event-loop', `${proxy}-proxy-sync`,
    `${proxy} emscripten_proxy_sync (ours: bare mbx_send + futex completion)`, false);
  add('sync-rt-event-loop-vs-callback', 'sync-rt-event-loop', 'mbx', 'sync-rt-event-loop',
    `${proxy}-proxy-callback`, `${proxy} emscripten_proxy_callback (caller polls its queue)`, false);
  add('sync-rt-mbx-wait-vs-event-loop-sync', 'sync-rt-mbx-wait', 'mbx', 'sync-rt-event-loop', `${proxy}-proxy-sync`,
    `${proxy} emscripten_proxy_sync to an event-loop thread`, false);
  add('sync-rt-mbx-wait', 'sync-rt-mbx-wait', 'mbx', 'sync-rt-mbx-wait', 'futex-pingpong', 'raw futex wait/wake ping-pong', false);
  add('sync-rt-mbx-wait-mbx-send', 'sync-rt-mbx-wait', 'mbx-send', 'sync-rt-mbx-wait', 'futex-pingpong',
    'raw futex wait/wake ping-pong (ours: bare mbx_send + futex completion)', false);
  add('sync-rt-mbx-wait-vs-spin', 'sync-rt-mbx-wait', 'mbx', 'sync-rt-mbx-wait', 'spin-pingpong', 'spinning ping-pong (floor)', false);
  // CPU near zero is noise: floor at 0.1% of a core.
  add('idle-receiver-cpu', 'idle-receiver-cpu', 'mbx', 'idle-receiver-cpu', 'futex-pingpong',
    'receiver idle in a raw futex wait', false, 0.1);
  add('thread-lifetime', 'thread-lifetime', 'mbx', 'thread-lifetime', 'plain', 'pthread_create without interposition', false);
  add('heap-high-water-churn', 'heap-high-water', 'mbx', 'heap-high-water', 'plain',
    'same churn without interposition (1 KiB floor)', false, 1024);
  const rb = get('retired-thread-bytes', 'mbx');
  if (rb) {
    out.push({ name: `retired-thread-bytes [${tc.label}]`, unit: 'bytes', ours: rb.median, baseline: 128,
      baseline_name: 'target', ratio: Number((128 / rb.median).toFixed(3)), key: 'retired-thread-bytes' });
  }
  for (const p of [1, 2]) {
    const w = `send-receive-${p}p`;
    add(w, w, 'mbx', w, 'mutex-ring', 'mutex-protected ring buffer (em_task_queue style)', false);
  }
  return out;
}

const toolchains = [];
toolchains.push(build('wasm', envFor(null)));
for (const e of extraEnvs) toolchains.push(build('wasm', envFor(e)));
if (!argv.includes('--no-native')) toolchains.push(build('native', envFor(null)));

const all = [];
for (const tc of toolchains) all.push(...entries(tc, measure(tc)));

const seconds = (Date.now() - started) / 1000;
const benchmarks = all.map(({ key, ...e }) => e);
if (valueOf('--save')) writeFileSync(valueOf('--save'), `${JSON.stringify({ benchmarks }, null, 1)}\n`);
if (json) {
  console.log(JSON.stringify({ benchmarks }));
} else {
  const fmt = (x) => (Math.abs(x) >= 1e5 ? x.toExponential(3) : Number(x.toPrecision(4)).toString());
  const rows = all.map((e) => {
    const t = TARGETS[e.key];
    return [e.name, e.unit, fmt(e.ours), fmt(e.baseline), e.baseline_name, e.ratio.toFixed(2),
      t ? `${t.text}: ${e.ratio >= t.min ? 'met' : 'NOT met'}` : ''];
  });
  const head = ['benchmark', 'unit', 'mbx', 'baseline', 'baseline is', 'ratio', 'target'];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (r) => r.map((c, i) => c.padEnd(widths[i])).join('  ');
  console.log(line(head));
  for (const r of rows) console.log(line(r));
  console.log(`(medians of ${reps} repetitions; ratio > 1 means mbx is better; ${seconds.toFixed(0)}s total)`);
}
if (argv.includes('--browser')) await (await import('./bench-browser.mjs')).printBrowserRows({ reps: Math.min(reps, 5), log });
