// Configures and builds the flavours of the project into build/<flavour>/:
//   native, native-tsan, native-asan (ASan+UBSan), wasm, wasm-asan.
// Usage: node js/build.mjs [--flavors a,b]   (or env MBX_FLAVORS=a,b)
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
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

// emcc's JS optimizer (Emscripten 3.1.6 at -O1+) needs Debian's acorn;
// harmless elsewhere.
export function toolEnv() {
  const extra = '/usr/share/nodejs';
  const cur = process.env.NODE_PATH;
  return { ...process.env, NODE_PATH: cur ? `${extra}:${cur}` : extra };
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
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

export function buildFlavor(name) {
  const f = FLAVORS[name];
  const dir = path.join(ROOT, 'build', name);
  const t0 = Date.now();
  if (!existsSync(path.join(dir, 'build.ninja'))) {
    const args = ['-S', ROOT, '-B', dir, '-G', 'Ninja', `-DMBX_SANITIZE=${f.sanitize}`,
      `-DCMAKE_BUILD_TYPE=${f.wasm ? 'Release' : 'RelWithDebInfo'}`];
    if (f.wasm) run('emcmake', ['cmake', ...args], { stdio: ['ignore', 'ignore', 'inherit'] });
    else run('cmake', [...args, ...(f.sanitize ? ['-DCMAKE_C_COMPILER=clang', '-DCMAKE_CXX_COMPILER=clang++'] : [])],
      { stdio: ['ignore', 'ignore', 'inherit'] });
  }
  run('cmake', ['--build', dir], { stdio: ['ignore', 'ignore', 'inherit'] });
  console.log(`built ${name} in ${((Date.now() - t0) / 1000).toFixed(1)}s`);
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
