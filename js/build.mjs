// Configures and builds the flavours of the project:
//   native, native-tsan, native-asan (ASan+UBSan) into build/<flavour>/,
//   wasm, wasm-asan into build/<flavour>-<emcc version>/ (e.g. build/wasm-5.0.7/).
// The wasm flavours use whatever Emscripten is active: the emcc first on PATH
// (Debian's, an emsdk after `source emsdk_env.sh`, ...). Each toolchain gets
// its own build directory, so switching back and forth never mixes objects.
// Usage: node js/build.mjs [--flavors a,b]   (or env MBX_FLAVORS=a,b)
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

export const FLAVORS = {
  'native': { wasm: false, sanitize: '' },
  'native-tsan': { wasm: false, sanitize: 'thread' },
  'native-asan': { wasm: false, sanitize: 'address' },
  'wasm': { wasm: true, sanitize: '' },
  'wasm-asan': { wasm: true, sanitize: 'address' },
};

function which(cmd) {
  for (const dir of (process.env.PATH || '').split(path.delimiter)) {
    const p = path.join(dir || '.', cmd);
    if (existsSync(p)) return p;
  }
  return null;
}

export function versionAtLeast(parts, min) {
  for (let i = 0; i < min.length; i++) {
    if ((parts[i] ?? 0) !== min[i]) return (parts[i] ?? 0) > min[i];
  }
  return true;
}

// The active Emscripten, or null if there is no emcc on PATH. `legacyNode`:
// releases before 3.1.11 load .wasm with fetch() when Node has it, which
// fails on a file path (Node >= 18 needs --no-experimental-fetch), and
// Debian's 3.1.6 finds its JS optimizer's acorn only through
// NODE_PATH=/usr/share/nodejs.
let active;
export function emscripten() {
  if (active !== undefined) return active;
  const emcc = which('emcc');
  active = null;
  if (!emcc) return active;
  const r = spawnSync(emcc, ['-dumpversion'], { encoding: 'utf8' });
  const version = (r.stdout || '').trim().replace(/-.*$/, ''); // "5.0.7-git" -> "5.0.7"
  if (r.status !== 0 || !/^\d+\.\d+\.\d+$/.test(version)) {
    throw new Error(`${emcc} -dumpversion failed: ${r.stderr || r.stdout}`);
  }
  const parts = version.split('.').map(Number);
  active = {
    emcc: realpathSync(emcc), bin: path.dirname(emcc), version, parts,
    legacyNode: !versionAtLeast(parts, [3, 1, 11]),
  };
  return active;
}

function requireEmscripten() {
  const em = emscripten();
  if (!em) throw new Error('emcc not found on PATH: run tools/setup-debian.sh, or activate an Emscripten (emsdk_env.sh)');
  return em;
}

// Where a flavour is built (and where its programs are run from).
export function buildDir(flavor) {
  if (!FLAVORS[flavor]) throw new Error(`unknown flavor ${flavor}`);
  const name = FLAVORS[flavor].wasm ? `${flavor}-${requireEmscripten().version}` : flavor;
  return path.join(ROOT, 'build', name);
}

// Node arguments for running a wasm program of the active toolchain.
export function nodeArgs() {
  return emscripten()?.legacyNode ? ['--no-experimental-fetch'] : [];
}

// Environment for emcc and for the programs (see legacyNode above).
let env;
export function toolEnv() {
  if (env) return env;
  env = { ...process.env };
  if (emscripten()?.legacyNode && existsSync('/usr/share/nodejs')) {
    const cur = process.env.NODE_PATH;
    env.NODE_PATH = cur ? `/usr/share/nodejs:${cur}` : '/usr/share/nodejs';
  }
  return env;
}

export function selectedFlavors(argv = process.argv.slice(2)) {
  const i = argv.indexOf('--flavors');
  const list = i >= 0 ? argv[i + 1] : process.env.MBX_FLAVORS;
  const names = list ? list.split(',').filter(Boolean) : Object.keys(FLAVORS);
  for (const n of names) if (!FLAVORS[n]) throw new Error(`unknown flavor ${n}`);
  return names;
}

function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { stdio: 'inherit', env: toolEnv(), cwd: ROOT, ...opts });
  if (r.error) throw r.error;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status})`);
}

function have(cmd) {
  return which(cmd) !== null;
}

export function buildFlavor(name) {
  const f = FLAVORS[name];
  const dir = buildDir(name);
  const t0 = Date.now();
  // A wasm build dir records the emcc (and EM_CONFIG) it was configured
  // with: two installations of one version (Debian's and an emsdk's) must
  // not share it.
  const stampFile = path.join(dir, 'mbx-toolchain.json');
  const stamp = f.wasm ? JSON.stringify({ emcc: requireEmscripten().emcc, version: emscripten().version,
    EM_CONFIG: process.env.EM_CONFIG ?? '' }) : '';
  if (f.wasm && existsSync(dir) && (!existsSync(stampFile) || readFileSync(stampFile, 'utf8') !== stamp)) {
    console.log(`${path.relative(ROOT, dir)} was configured with another emcc: reconfiguring`);
    rmSync(dir, { recursive: true, force: true });
  }
  if (!existsSync(path.join(dir, 'build.ninja'))) {
    const args = ['-S', ROOT, '-B', dir, '-G', 'Ninja', `-DMBX_SANITIZE=${f.sanitize}`,
      `-DCMAKE_BUILD_TYPE=${f.wasm ? 'Release' : 'RelWithDebInfo'}`];
    // emcmake from emcc's own directory: the same installation.
    if (f.wasm) run(path.join(emscripten().bin, 'emcmake'), ['cmake', ...args], { stdio: ['ignore', 'ignore', 'inherit'] });
    else run('cmake', [...args, ...(f.sanitize ? ['-DCMAKE_C_COMPILER=clang', '-DCMAKE_CXX_COMPILER=clang++'] : [])],
      { stdio: ['ignore', 'ignore', 'inherit'] });
    if (f.wasm) writeFileSync(stampFile, stamp);
  }
  run('cmake', ['--build', dir], { stdio: ['ignore', 'ignore', 'inherit'] });
  console.log(`built ${path.relative(ROOT, dir)} in ${((Date.now() - t0) / 1000).toFixed(1)}s`);
  return dir;
}

export function buildAll(names = selectedFlavors()) {
  if (!have('ninja')) throw new Error('ninja not found: run tools/setup-debian.sh');
  for (const n of names) buildFlavor(n);
  return names;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  buildAll();
}
