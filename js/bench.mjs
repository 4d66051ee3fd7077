// Benchmarks (test/bench): builds the benchmark programs at -O2 into
// build/bench-wasm-<emcc version>/ and build/bench-native/, checks the
// machine, runs the programs (each alternates its contenders per repetition
// inside one process) and prints, for every row of issue 17's targets, the
// median, its spread and the target's verdict (ratio > 1 always means mbx is
// better). Not part of the test suite: js/test.mjs neither builds nor runs this.
//
// Usage: node js/bench.mjs [--json] [--save FILE] [--compare BASE.json]
//                          [--reps N] [--quick] [--no-native] [--no-wasm]
//                          [--toolchain-env path/to/env.sh]... [--browser]
//   --browser        also the browser rows of js/bench-browser.mjs (printed
//                    after the table; browser / Node ratios)
//   --toolchain-env  also run with the Emscripten that this script (sourced
//                    by sh) activates, e.g. /opt/emscripten-current/env.sh
//   --reps N         repetitions per workload (default 15, --quick 5)
//   --quick          fewer repetitions and shorter workloads (a smoke run)
//   --save FILE      also write the JSON object to FILE
//   --compare BASE   print each row's change against a run saved with --save
//   --json           print exactly one JSON object on stdout (progress and
//                    warnings go to stderr)
//
// JSON: {schema: "mbx-bench/2", date, seconds, reps, quick, noisy,
//        machine: {cores, checks: [{when, load1, load5, load15,
//          others_busy_cores, calibration_us: {median, min, max},
//          calibration_spread, noisy, reasons: [...]}]},
//        toolchains: [label], failures: [{toolchain, program, attempt,
//          status, signal, error}], benchmarks: [row], compare?: [change]}
// row: {name: "<key> [<toolchain>]", key, toolchain, unit,
//       ours, ours_spread: {min, q1, median, q3, max, n},
//       baseline, baseline_spread, baseline_name,
//       better: "higher" | "lower"  (of ours and baseline),
//       ratio, ratio_spread  (ratio > 1 means mbx is better; the ratio of
//                             each repetition's pair, so its spread is the
//                             spread of the comparison itself),
//       target: {text, on: "ratio" | "ours", op: ">=" | "<=", value,
//                required, issue} | null,
//       met: bool | null, confident: bool | null  (the verdict holds for
//            the whole interquartile range of the compared figure),
//       noisy: bool, error?: string  (no samples: the program failed),
//       warning?: string  (its program failed once and was run again)}
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ROOT, toolEnv } from './build.mjs';

const argv = process.argv.slice(2);
const json = argv.includes('--json');
const quick = argv.includes('--quick');
const reps = Number(valueOf('--reps') ?? (quick ? 5 : 15));
const extraEnvs = argv.flatMap((a, i) => (a === '--toolchain-env' ? [argv[i + 1]] : []));
const log = (...a) => (json ? console.error : console.log)(...a);
const warn = (...a) => console.error(...a);
const started = Date.now();

function valueOf(flag) {
  const i = argv.indexOf(flag);
  return i >= 0 ? argv[i + 1] : undefined;
}

// ------------------------------------------------------------ the machine
const sleepMs = (ms) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);

function cpuTimes() {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const idle = line[3] + (line[4] ?? 0); // idle + iowait
  return { total: line.reduce((a, b) => a + b, 0), idle };
}

// A fixed amount of integer work, timed: on a machine where this process
// keeps its core, the repetitions agree to a few percent.
function spin() {
  const t0 = process.hrtime.bigint();
  let x = 1;
  for (let i = 0; i < 2e6; i++) x = (x * 1103515245 + 12345) | 0;
  if (x === 42) log('');
  return Number(process.hrtime.bigint() - t0) / 1e3;
}

// Is the machine quiet enough to trust a figure? Others' CPU use (from
// /proc/stat while this process sleeps), and the spread of a short
// calibration spin. The load average only where /proc/stat is missing: it
// is a minute's decaying average that counts this bench's own threads (16
// producers a moment ago), so it flagged every run of an idle machine.
function checkMachine(when) {
  const cores = os.availableParallelism?.() ?? os.cpus().length;
  const a = existsSync('/proc/stat') ? cpuTimes() : null;
  sleepMs(500);
  const b = a ? cpuTimes() : null;
  const others = b && b.total > a.total ? (1 - (b.idle - a.idle) / (b.total - a.total)) * cores : null;
  spin(); // warm the JIT
  const t = Array.from({ length: 25 }, spin).sort((x, y) => x - y);
  const calibration = { median: t[12], min: t[0], max: t[24] };
  const calibrationSpread = t[22] / t[0]; // the 90th percentile against the best
  const [load1, load5, load15] = os.loadavg();
  const reasons = [];
  if (others !== null && others > 0.25) reasons.push(`other processes use ${others.toFixed(2)} of ${cores} cores`);
  if (others === null && load1 > cores * 0.75) reasons.push(`load average ${load1.toFixed(2)} on ${cores} cores`);
  if (calibrationSpread > 1.25) reasons.push(`calibration spin spread ${calibrationSpread.toFixed(2)}x (90th percentile / best)`);
  const check = { when, load1, load5, load15, others_busy_cores: others === null ? null : Number(others.toFixed(3)),
    calibration_us: calibration, calibration_spread: Number(calibrationSpread.toFixed(3)), noisy: reasons.length > 0, reasons };
  if (check.noisy) warn(`WARNING: noisy machine (${when}): ${reasons.join('; ')}; do not trust these figures`);
  else log(`machine quiet (${when}): load ${load1.toFixed(2)}/${cores} cores, others ${others?.toFixed(2)} cores, spin spread ${calibrationSpread.toFixed(2)}x`);
  return check;
}

// ------------------------------------------------------------ building
// Environment of the active toolchain, or of one activated by an env script.
function envFor(script) {
  if (!script) return toolEnv();
  const r = spawnSync('sh', ['-c', `. "${script}" >/dev/null 2>&1 && env -0`], { env: process.env, encoding: 'utf8' });
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

// ------------------------------------------------------------ running
const failures = [];

// Runs one program (once more if it fails); returns its RESULT lines as
// {workload, contender, value, unit, rep}. A failure is recorded, never
// thrown: the other programs still run and the rows that lack samples say
// why. `rep` pairs the contenders of one repetition: the n-th sample of a
// (workload, contender) in one invocation, or the given repetition.
// `prefix`: a command the program runs under (taskset), and `suffix` is
// appended to its workloads' names.
function runProgram(tc, name, args, rep = null, prefix = [], suffix = '') {
  const program = tc.wasm ? process.execPath : path.join(tc.dir, name);
  const cmd = prefix.length ? prefix[0] : program;
  const full = [...prefix.slice(1), ...(prefix.length ? [program] : []),
    ...(tc.wasm ? ['--no-experimental-fetch', path.join(tc.dir, `${name}.js`), ...args] : args)];
  const samples = [];
  for (let attempt = 1; attempt <= 2; attempt++) {
    const r = spawnSync(cmd, full, { env: tc.env, cwd: ROOT, encoding: 'utf8', maxBuffer: 1 << 26, timeout: 600000 });
    const out = r.stdout ?? '';
    const seen = new Map();
    for (const l of out.split('\n')) {
      if (l.startsWith('INFO ')) log(`[${tc.label}] ${name}: ${l.slice(5)}`);
      if (!l.startsWith('RESULT ')) continue;
      const [, name0, contender, value, unit] = l.split(' ');
      const workload = name0 + suffix;
      const k = `${workload}/${contender}`;
      const n = seen.get(k) ?? 0;
      seen.set(k, n + 1);
      samples.push({ workload, contender, value: Number(value), unit, rep: rep ?? `${attempt}:${n}` });
    }
    const ok = !r.error && r.status === 0 && /^DONE$/m.test(out);
    if (ok) return samples;
    const error = r.error ? String(r.error.message ?? r.error)
      : `exit ${r.status ?? r.signal}: ${`${r.stderr ?? ''}`.trim().split('\n').slice(-3).join(' | ')}`;
    failures.push({ toolchain: tc.label, program: name, args: args.join(' '), attempt, status: r.status, signal: r.signal, error });
    warn(`[${tc.label}] ${name} FAILED (attempt ${attempt}): ${error}`);
  }
  return samples; // whatever the failed attempts measured before they died
}

// The first CPU this process may run on, if taskset can pin to it (Linux).
function firstCpu() {
  try {
    const status = readFileSync('/proc/self/status', 'utf8');
    const m = /^Cpus_allowed_list:\s*(\d+)/m.exec(status);
    if (!m || spawnSync('taskset', ['-c', m[1], 'true']).status !== 0) return null;
    return Number(m[1]);
  } catch {
    return null;
  }
}

function measure(tc) {
  const samples = [];
  const t0 = Date.now();
  log(`[${tc.label}] proxy/round-trip/growth workloads, ${reps} reps...`);
  samples.push(...runProgram(tc, 'bench_proxy', ['--reps', String(reps), ...(quick ? ['--msgs', '50000', '--rts', '500'] : [])]));
  // The floods again with every thread on one CPU, for information: no
  // producer can then contend with another from a second core (wasm cannot
  // pin a Worker, but it can pin the whole process).
  const oneCpu = firstCpu();
  if (tc.wasm && oneCpu !== null) {
    log(`[${tc.label}] async floods on CPU ${oneCpu} alone, ${reps} reps...`);
    samples.push(...runProgram(tc, 'bench_proxy', ['--only', 'async', '--reps', String(reps),
      ...(quick ? ['--msgs', '50000'] : [])], null, ['taskset', '-c', String(oneCpu)], '-one-cpu'));
  }
  log(`[${tc.label}] thread lifetime and memory, ${reps} interleaved process pairs...`);
  const threads = quick ? '300' : '1000';
  for (let i = 0; i < reps; i++) {
    const order = i % 2 ? ['bench_thread_plain', 'bench_thread'] : ['bench_thread', 'bench_thread_plain'];
    for (const p of order) samples.push(...runProgram(tc, p, ['--threads', threads], `p${i}`));
  }
  log(`[${tc.label}] C++ header vs C API, ${reps} reps...`);
  samples.push(...runProgram(tc, 'bench_cpp', ['--reps', String(reps), ...(quick ? ['--rts', '5000'] : [])]));
  if (tc.wasm) {
    log(`[${tc.label}] JS promise vs callback round trips, ${reps} reps...`);
    samples.push(...runProgram(tc, 'bench_promise', ['--reps', String(reps), ...(quick ? ['--rts', '500'] : [])]));
  }
  // One averaged sample per size and invocation: a few invocations.
  const broadcasts = quick ? 2 : 5;
  log(`[${tc.label}] broadcast to 4/16/64 idle threads vs sync loops, ${broadcasts} runs...`);
  for (let i = 0; i < broadcasts; i++) {
    samples.push(...runProgram(tc, 'bench_broadcast', ['--reps', quick ? '10' : '40'], `b${i}`));
  }
  log(`[${tc.label}] send+receive vs mutex ring vs Vyukov queue, ${reps} reps...`);
  const queueArgs = ['--reps', String(reps), '--msgs', quick ? '200000' : '500000'];
  samples.push(...runProgram(tc, 'bench_queue', queueArgs));
  // Natively also unpinned, and 1 producer on one CPU, for information; wasm
  // cannot pin, and its one run is unpinned (bench_queue.c, "Placement").
  if (!tc.wasm) {
    samples.push(...runProgram(tc, 'bench_queue', [...queueArgs, '--placement', 'free']));
    samples.push(...runProgram(tc, 'bench_queue', [...queueArgs, '--producers', '1', '--placement', 'one']));
  }
  log(`[${tc.label}] measured in ${((Date.now() - t0) / 1000).toFixed(0)}s`);
  const series = new Map(); // "workload/contender" -> {unit, values: Map(rep -> value)}
  for (const s of samples) {
    const key = `${s.workload}/${s.contender}`;
    if (!series.has(key)) series.set(key, { unit: s.unit, values: new Map() });
    series.get(key).values.set(s.rep, s.value);
  }
  return series;
}

// ------------------------------------------------------------ statistics
function quantile(sorted, q) {
  if (!sorted.length) return NaN;
  const i = (sorted.length - 1) * q, lo = Math.floor(i), hi = Math.ceil(i);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (i - lo);
}
const round = (x) => (x === null || !Number.isFinite(x) ? x : Number(x.toPrecision(4)));
function spread(values) {
  const s = [...values].filter(Number.isFinite).sort((a, b) => a - b);
  if (!s.length) return null;
  return { min: round(s[0]), q1: round(quantile(s, 0.25)), median: round(quantile(s, 0.5)),
    q3: round(quantile(s, 0.75)), max: round(s[s.length - 1]), n: s.length };
}
// Pairs two per-repetition series: Map(rep -> f(a, b)) over the reps both have.
function pair(a, b, f) {
  const out = new Map();
  if (!a || !b) return out;
  for (const [rep, x] of a) if (b.has(rep)) out.set(rep, f(x, b.get(rep)));
  return out;
}
const mapValues = (m, f) => new Map([...(m ?? new Map())].map(([k, v]) => [k, f(v)]));

// ------------------------------------------------------------ the rows
// Each row compares ours with a baseline, both per repetition; ratio > 1
// means mbx is better. `floor` keeps near-zero figures (idle CPU, bytes)
// from making ratios of noise.
function rows(tc, series, noisy) {
  const out = [];
  const get = (w, c) => series.get(`${w}/${c}`)?.values;
  const unitOf = (w, c) => series.get(`${w}/${c}`)?.unit;
  const peer = [...series.keys()].some((k) => k.includes('upstream-proxy')) ? 'upstream' : 'legacy';
  const add = (spec) => {
    const { key, unit, ours, base, baseName, better = 'lower', floor = 0, target = null, program } = spec;
    const hasBase = 'base' in spec;
    const row = { name: `${key} [${tc.label}]`, key, toolchain: tc.label, unit };
    const o = ours ?? new Map();
    row.ours = spread(o.values())?.median ?? null;
    row.ours_spread = spread(o.values());
    let ratios = new Map();
    if (base) {
      row.baseline = spread(base.values())?.median ?? null;
      row.baseline_spread = spread(base.values());
      ratios = pair(o, base, (x, y) => (better === 'higher' ? x / y : Math.max(y, floor) / Math.max(x, floor)));
    } else {
      row.baseline = null;
      row.baseline_spread = null;
    }
    row.baseline_name = baseName;
    row.better = better;
    row.ratio_spread = spread(ratios.values());
    row.ratio = row.ratio_spread?.median ?? null;
    row.target = target;
    row.met = null;
    row.confident = null;
    if (target) {
      const s = target.on === 'ratio' ? row.ratio_spread : row.ours_spread;
      const holds = (x) => (target.op === '>=' ? x >= target.value : x <= target.value);
      if (s) {
        row.met = holds(s.median);
        row.confident = holds(s.q1) === row.met && holds(s.q3) === row.met;
      } else {
        row.met = false;
      }
    }
    row.noisy = noisy;
    const failed = failures.filter((x) => x.toolchain === tc.label && (!program || x.program.startsWith(program)));
    const why = failed.map((x) => `${x.program} attempt ${x.attempt}: ${x.error}`).join('; ');
    if (!o.size || (hasBase && !ratios.size)) row.error = `no samples${why ? `: ${why}` : ''}`;
    else if (failed.length) row.warning = `measured despite failures (${why})`;
    out.push(row);
  };
  const ratioTarget = (value, text, required = true, issue = 17) => ({ text, on: 'ratio', op: '>=', value, required, issue });

  // Async throughput (wasm: to an event-loop consumer vs the toolchain's
  // proxying queue; native: send+receive to a consumer in mbx_wait vs a
  // mutex ring and a Vyukov queue) and per-message cost flatness.
  const ps = [1, 2, 4, 8, 16];
  const required = (p) => p <= 4; // 8 and 16: reported (issue 17)
  if (tc.wasm) {
    for (const p of ps) {
      const w = `async-throughput-${p}p`;
      add({ key: w, unit: 'msg/s', ours: get(w, 'mbx'), base: get(w, `${peer}-proxy-async`), better: 'higher',
        baseName: `${peer} emscripten_proxy_async`, program: 'bench_proxy',
        target: ratioTarget(3, '>= 3x the best peer', required(p)) });
    }
    const cost = (p) => mapValues(get(`async-throughput-${p}p`, 'mbx'), (x) => 1e9 / x);
    for (const p of ps.slice(1)) {
      add({ key: `per-message-cost-${p}p-vs-1p`, unit: 'ns/msg', ours: cost(p), base: cost(1), program: 'bench_proxy',
        baseName: 'ours with 1 producer', target: ratioTarget(0.8, 'flat: <= 1.25x the 1-producer cost') });
    }
    // Every thread on one CPU (taskset): no target. What the floods and
    // their flatness read when producers cannot contend from two cores.
    const oneCpuKey = (p) => `async-throughput-${p}p-one-cpu`;
    const costOne = (p) => mapValues(get(oneCpuKey(p), 'mbx'), (x) => 1e9 / x);
    const oneCpuPs = get(oneCpuKey(1), 'mbx') ? ps : []; // measured only where taskset pins
    for (const p of oneCpuPs) {
      add({ key: oneCpuKey(p), unit: 'msg/s', ours: get(oneCpuKey(p), 'mbx'), base: get(oneCpuKey(p), `${peer}-proxy-async`),
        better: 'higher', baseName: `${peer} emscripten_proxy_async, all threads on one CPU`, program: 'bench_proxy' });
    }
    for (const p of oneCpuPs.slice(1)) {
      add({ key: `per-message-cost-${p}p-vs-1p-one-cpu`, unit: 'ns/msg', ours: costOne(p), base: costOne(1),
        program: 'bench_proxy', baseName: 'ours with 1 producer, all threads on one CPU' });
    }
  } else {
    for (const p of ps) {
      const w = `send-receive-${p}p`;
      add({ key: w, unit: 'ns', ours: get(w, 'mbx'), base: get(w, 'mutex-ring'), program: 'bench_queue',
        baseName: 'mutex-protected ring buffer (em_task_queue style)',
        target: ratioTarget(2, '>= 2x the mutex ring', required(p)) });
      add({ key: `${w}-vs-vyukov`, unit: 'ns', ours: get(w, 'mbx'), base: get(w, 'vyukov'), program: 'bench_queue',
        baseName: 'Vyukov bounded MPSC array queue + sleeping consumer',
        target: ratioTarget(1 / 1.5, 'within 1.5x of a fast MPSC design', required(p)) });
    }
    // All on one CPU: no target (bench_queue.c, "Placement").
    add({ key: 'send-receive-1p-one-cpu', unit: 'ns', ours: get('send-receive-1p-one-cpu', 'mbx'),
      base: get('send-receive-1p-one-cpu', 'mutex-ring'), program: 'bench_queue',
      baseName: 'mutex-protected ring buffer, all threads on one CPU' });
    for (const p of ps.slice(1)) {
      add({ key: `per-message-cost-${p}p-vs-1p`, unit: 'ns/msg', ours: get(`send-receive-${p}p`, 'mbx'),
        base: get('send-receive-1p', 'mbx'), baseName: 'ours with 1 producer', program: 'bench_queue',
        target: ratioTarget(0.8, 'flat: <= 1.25x the 1-producer cost') });
    }
  }
  // Threads not pinned (wasm cannot pin a Worker; natively the free
  // placement): the core's queue to a consumer in mbx_wait against Vyukov's,
  // and each design's own flatness. Producers then run on both CPUs at once
  // and fight over the lines they share, which the split placement never
  // lets them do. No targets: what the flatness targets face unpinned.
  for (const p of ps) {
    const w = `send-receive-${p}p-free`;
    add({ key: w, unit: 'ns', ours: get(w, 'mbx'), base: get(w, 'vyukov'), program: 'bench_queue',
      baseName: 'Vyukov bounded MPSC array queue + sleeping consumer, threads not pinned' });
  }
  for (const p of ps.slice(1)) {
    const w = `send-receive-${p}p-free`;
    add({ key: `per-message-cost-${p}p-vs-1p-free`, unit: 'ns/msg', ours: get(w, 'mbx'),
      base: get('send-receive-1p-free', 'mbx'), program: 'bench_queue',
      baseName: "the core's queue with 1 producer, threads not pinned" });
    add({ key: `vyukov-per-message-cost-${p}p-vs-1p-free`, unit: 'ns/msg', ours: get(w, 'vyukov'),
      base: get('send-receive-1p-free', 'vyukov'), program: 'bench_queue',
      baseName: "Vyukov's queue with 1 producer, threads not pinned (that design's own flatness)" });
  }

  // The two halves of an async message, each timed alone on a backlog (no
  // other thread runs): stable to a few percent where the floods move by
  // 2x, so a change to the send or the receive path shows here first.
  for (const half of ['send', 'receive']) {
    const w = `${half}-backlog`;
    add({ key: w, unit: 'ns', ours: get(w, 'mbx'), ...(tc.wasm ? { base: get(w, `${peer}-proxy-async`) } : {}),
      baseName: tc.wasm ? `${peer} emscripten_proxy_async (${half === 'send' ? 'the send' : 'emscripten_proxy_execute_queue'})`
        : 'none (ours alone)', program: 'bench_proxy' });
  }

  // Round trips.
  if (tc.wasm) {
    add({ key: 'sync-rt-event-loop', unit: 'us', ours: get('sync-rt-event-loop', 'mbx'),
      base: get('sync-rt-event-loop', `${peer}-proxy-sync`), baseName: `${peer} emscripten_proxy_sync`,
      program: 'bench_proxy', target: peer === 'legacy' ? ratioTarget(2, '>= 2x legacy') : ratioTarget(1.5, '>= 1.5x upstream') });
    add({ key: 'sync-rt-event-loop-mbx-send', unit: 'us', ours: get('sync-rt-event-loop', 'mbx-send'),
      base: get('sync-rt-event-loop', `${peer}-proxy-sync`), program: 'bench_proxy',
      baseName: `${peer} emscripten_proxy_sync (ours: bare mbx_send + futex completion)` });
    if (get('sync-rt-event-loop', `${peer}-proxy-callback`)) {
      add({ key: 'sync-rt-event-loop-vs-callback', unit: 'us', ours: get('sync-rt-event-loop', 'mbx'),
        base: get('sync-rt-event-loop', `${peer}-proxy-callback`), program: 'bench_proxy',
        baseName: `${peer} emscripten_proxy_callback (caller polls its queue)` });
    }
    add({ key: 'sync-rt-mbx-wait-vs-event-loop-sync', unit: 'us', ours: get('sync-rt-mbx-wait', 'mbx'),
      base: get('sync-rt-event-loop', `${peer}-proxy-sync`), program: 'bench_proxy',
      baseName: `${peer} emscripten_proxy_sync to an event-loop thread`, target: ratioTarget(20, ">= 20x the peer's event-loop sync") });
  }
  add({ key: 'sync-rt-mbx-wait', unit: 'us', ours: get('sync-rt-mbx-wait', 'mbx'), base: get('sync-rt-mbx-wait', 'futex-pingpong'),
    baseName: 'raw futex wait/wake ping-pong', program: 'bench_proxy', target: ratioTarget(1, 'no slower than raw futex ping-pong') });
  add({ key: 'sync-rt-mbx-wait-mbx-send', unit: 'us', ours: get('sync-rt-mbx-wait', 'mbx-send'),
    base: get('sync-rt-mbx-wait', 'futex-pingpong'), program: 'bench_proxy',
    baseName: 'raw futex wait/wake ping-pong (ours: bare mbx_send + futex completion)' });
  add({ key: 'sync-rt-mbx-wait-vs-spin', unit: 'us', ours: get('sync-rt-mbx-wait', 'mbx'), base: get('sync-rt-mbx-wait', 'spin-pingpong'),
    baseName: 'spinning ping-pong (the floor)', program: 'bench_proxy',
    target: ratioTarget(1 / 3, 'within 3x of the spinning floor (when both threads have a core)') });
  add({ key: 'spin-floor', unit: 'us', ours: get('sync-rt-mbx-wait', 'spin-pingpong'), baseName: 'none (the floor itself)',
    program: 'bench_proxy' });
  // CPU near zero is noise: floor at 0.1% of a core.
  add({ key: 'idle-receiver-cpu', unit: '%core', ours: get('idle-receiver-cpu', 'mbx'), base: get('idle-receiver-cpu', 'futex-pingpong'),
    baseName: 'receiver idle in a raw futex wait', floor: 0.1, program: 'bench_proxy' });

  // Threads and memory.
  // The same process creates threads both ways, in alternating blocks
  // (test/bench/bench_thread.c); the build without the library, in a process
  // of its own, stays as an untargeted row.
  add({ key: 'thread-lifetime', unit: 'us', ours: get('thread-lifetime', 'mbx'), base: get('thread-lifetime', 'plain-same-process'),
    baseName: 'pthread_create past the interposition, same process, alternating blocks', program: 'bench_thread',
    target: ratioTarget(1 / 1.1, '<= 10% overhead', true, 5) });
  add({ key: 'thread-lifetime-two-programs', unit: 'us', ours: get('thread-lifetime', 'mbx'), base: get('thread-lifetime', 'plain'),
    baseName: 'pthread_create in a build without the library (another process)', program: 'bench_thread' });
  const table = get('record-table-bytes', 'mbx');
  add({ key: 'heap-high-water-churn', unit: 'bytes', ours: get('heap-high-water', 'mbx'),
    base: pair(get('heap-high-water', 'plain'), table, (x, t) => x + t), floor: 1024, program: 'bench_thread',
    baseName: 'same churn without the library, plus the record table (stacks outside the heap)',
    target: ratioTarget(1, '<= without the library + the record table') });
  add({ key: 'library-high-water-churn', unit: 'bytes', ours: get('library-high-water', 'mbx'), base: table,
    baseName: 'the record table at the end (mbx_memory_stats.bytes_live)', floor: 1024, program: 'bench_thread' });
  const rb = get('retired-thread-bytes', 'mbx');
  add({ key: 'retired-thread-bytes', unit: 'bytes', ours: rb, base: mapValues(rb, () => 128), program: 'bench_thread',
    baseName: 'target: 128 bytes on wasm32',
    target: tc.wasm ? { text: '<= 128 B per retired record (wasm32)', on: 'ours', op: '<=', value: 128, required: true, issue: 17 } : null });
  add({ key: 'heap-growth-per-message', unit: 'B/msg', ours: get('heap-growth-per-message', 'mbx'), program: 'bench_proxy',
    baseName: 'none (whole C heap, allocator caches included)',
    target: { text: 'no growth once warm (whole heap: <= 0.05 B/msg)', on: 'ours', op: '<=', value: 0.05, required: true, issue: 17 } });
  add({ key: 'heap-growth-per-message-library', unit: 'B/msg', ours: get('heap-growth-per-message', 'mbx-library'),
    program: 'bench_proxy', baseName: "none (the library's own bytes, mbx_memory_stats.bytes_live, sampled at rest with its bounded caches emptied)",
    target: { text: 'no growth once warm (library bytes: 0)', on: 'ours', op: '<=', value: 0, required: true, issue: 17 } });
  // Front doors and broadcast (issues 14 and 15).
  add({ key: 'cpp-call-rt', unit: 'us', ours: get('cpp-call-rt', 'mbx-cpp-call'), base: get('cpp-call-rt', 'mbx-c-sync'),
    baseName: 'mbx_proxy_sync (C API)', program: 'bench_cpp',
    target: ratioTarget(1 / 1.2, 'mbx.hpp call within 1.2x of the C API', true, 15) });
  add({ key: 'cpp-post-self', unit: 'ns', ours: get('cpp-post-self', 'mbx-cpp-post'), base: get('cpp-post-self', 'mbx-c-send'),
    baseName: 'mbx_send (C API)', program: 'bench_cpp' });
  add({ key: 'cpp-post-large-extra-allocs', unit: 'allocs', ours: get('allocs-per-call', 'cpp-post-large'),
    base: get('allocs-per-call', 'c-send'), program: 'bench_cpp', baseName: 'mbx_send (C API)',
    target: { text: '<= 1 extra allocation per call (mbx_send: ~0)', on: 'ours', op: '<=', value: 1.05, required: true, issue: 15 } });
  if (tc.wasm) {
    add({ key: 'js-promise-rt-event-loop', unit: 'us', ours: get('js-rt-event-loop', 'mbx-promise'),
      base: get('js-rt-event-loop', 'mbx-callback'), program: 'bench_promise',
      baseName: 'mbx_proxy_callback chain (same path, no JS Promise)' });
  }
  for (const n of [4, 16, 64]) {
    const w = `broadcast-${n}`;
    add({ key: w, unit: 'us', ours: get(w, 'broadcast'), base: get(w, 'sync-loop'), program: 'bench_broadcast',
      baseName: `a loop of mbx_proxy_sync to ${n} idle threads` });
    if (get(w, 'upstream-sync-loop')) {
      add({ key: `${w}-vs-upstream`, unit: 'us', ours: get(w, 'broadcast'), base: get(w, 'upstream-sync-loop'),
        program: 'bench_broadcast', baseName: `upstream dlsync-style emscripten_proxy_sync loop to ${n} threads` });
    }
  }
  return out;
}

// ------------------------------------------------------------ output
const fmt = (x) => (x === null || x === undefined || Number.isNaN(x) ? '-'
  : Math.abs(x) >= 1e5 ? x.toExponential(2) : Number(x.toPrecision(3)).toString());
const rangeOf = (s) => (s ? `${fmt(s.q1)}..${fmt(s.q3)}` : '-');

function verdict(e) {
  if (e.error) return `FAILED (${e.error.slice(0, 60)})`;
  const w = e.warning ? ' [its program failed in this run: partial samples]' : '';
  if (!e.target) return w.trim();
  const v = e.met ? 'met' : 'NOT met';
  return `${e.target.text}: ${v}${e.confident ? '' : ' (unclear: IQR crosses target)'}${e.target.required ? '' : ' [reported]'}${w}`;
}

function table(head, rows) {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => String(r[i]).length)));
  const line = (r) => r.map((c, i) => String(c).padEnd(widths[i])).join('  ').trimEnd();
  return [line(head), ...rows.map(line)].join('\n');
}

function compareWith(base, rows) {
  // By name; else by key and toolchain family (a native compiler upgrade
  // keeps the rows comparable).
  const family = (r) => `${r.key}|${String(r.toolchain ?? '').replace(/^native cc .*/, 'native')}`;
  const old = new Map((base.benchmarks ?? []).map((r) => [r.name, r]));
  const oldByFamily = new Map((base.benchmarks ?? []).filter((r) => r.key).map((r) => [family(r), r]));
  const changes = [];
  for (const r of rows) {
    const b = old.get(r.name) ?? oldByFamily.get(family(r));
    if (!b) continue;
    const pct = (x, y) => (Number.isFinite(x) && Number.isFinite(y) && y !== 0 ? Number((100 * (x / y - 1)).toFixed(1)) : null);
    // Positive means ours got better (higher throughput, lower cost).
    const oursPct = pct(r.ours, b.ours);
    const better = oursPct === null ? null : r.better === 'higher' ? oursPct : pct(b.ours, r.ours);
    const beyond = r.ratio_spread && b.ratio_spread
      ? r.ratio_spread.q1 > b.ratio_spread.q3 || r.ratio_spread.q3 < b.ratio_spread.q1 : null;
    changes.push({ name: r.name, base_ours: b.ours, ours: r.ours, ours_better_pct: better, base_ratio: b.ratio,
      ratio: r.ratio, ratio_change_pct: pct(r.ratio, b.ratio), beyond_spread: beyond,
      base_met: b.met ?? null, met: r.met, base_noisy: b.noisy ?? base.noisy ?? null });
  }
  return changes;
}

// ------------------------------------------------------------ main
const checks = [checkMachine('start')];
const toolchains = [];
const buildOrFail = (kind, script) => {
  try {
    toolchains.push(build(kind, envFor(script)));
  } catch (e) {
    failures.push({ toolchain: script ?? kind, program: 'build', attempt: 1, status: null, signal: null, error: String(e.message).slice(0, 2000) });
    warn(`build ${script ?? kind} FAILED: ${String(e.message).slice(0, 2000)}`);
  }
};
if (!argv.includes('--no-wasm')) {
  buildOrFail('wasm', null);
  for (const e of extraEnvs) buildOrFail('wasm', e);
}
if (!argv.includes('--no-native')) buildOrFail('native', null);

const all = [];
for (const tc of toolchains) {
  const before = checkMachine(`before ${tc.label}`);
  checks.push(before);
  const series = measure(tc);
  const after = checkMachine(`after ${tc.label}`);
  checks.push(after);
  all.push(...rows(tc, series, before.noisy || after.noisy));
}
const noisy = checks.some((c) => c.noisy);
const seconds = (Date.now() - started) / 1000;
const result = {
  schema: 'mbx-bench/2', date: new Date(started).toISOString(), seconds: Math.round(seconds), reps, quick, noisy,
  machine: { cores: os.availableParallelism?.() ?? os.cpus().length, cpu: os.cpus()[0]?.model, checks },
  toolchains: toolchains.map((t) => t.label), failures, benchmarks: all,
};
if (valueOf('--compare')) result.compare = compareWith(JSON.parse(readFileSync(valueOf('--compare'), 'utf8')), all);
if (valueOf('--save')) writeFileSync(valueOf('--save'), `${JSON.stringify(result, null, 1)}\n`);

if (json) {
  console.log(JSON.stringify(result));
} else {
  console.log(table(['benchmark', 'unit', 'mbx', '(IQR)', 'baseline', 'baseline is', 'ratio', '(IQR)', 'target'],
    all.map((e) => [e.name, e.unit, fmt(e.ours), rangeOf(e.ours_spread), fmt(e.baseline), e.baseline_name,
      fmt(e.ratio), rangeOf(e.ratio_spread), verdict(e)])));
  const met = all.filter((e) => e.target?.required && e.met).length;
  const total = all.filter((e) => e.target?.required).length;
  console.log(`(medians of ${reps} repetitions, IQR = interquartile range; ratio > 1 means mbx is better; ` +
    `required targets met: ${met}/${total}; ${seconds.toFixed(0)}s total)`);
}
if (result.compare) {
  const say = json ? console.error : console.log;
  say(`\nchange against ${valueOf('--compare')} (positive: mbx got better; * = beyond both runs' ratio IQRs):`);
  say(table(['benchmark', 'mbx was', 'mbx now', 'change', 'ratio was', 'ratio now', 'ratio change', 'met'],
    result.compare.map((c) => [c.name, fmt(c.base_ours), fmt(c.ours), c.ours_better_pct === null ? '-' : `${c.ours_better_pct}%`,
      fmt(c.base_ratio), fmt(c.ratio), c.ratio_change_pct === null ? '-' : `${c.ratio_change_pct}%${c.beyond_spread ? ' *' : ''}`,
      `${c.base_met ?? '-'} -> ${c.met ?? '-'}`])));
}
if (noisy) {
  warn('WARNING: the machine was noisy during this run (see machine.checks in the JSON): ' +
    [...new Set(checks.flatMap((c) => c.reasons))].join('; '));
}
if (failures.length) warn(`WARNING: ${failures.length} program failure(s): ${failures.map((f) => `${f.toolchain} ${f.program}`).join(', ')}`);
if (argv.includes('--browser')) await (await import('./bench-browser.mjs')).printBrowserRows({ reps: Math.min(reps, 5), log });
