// The ways a user consumes the library, each building and running the demo
// (the summary line must say lost=0):
// - the Emscripten port: `emcc --use-port=tools/ports/mbx.py -pthread`
//   (Emscripten 3.1.54+; skipped on older ones);
// - the installed CMake package: `cmake --install` the flavour's build, then
//   a separate project with find_package(mbx) and mbx::mbx;
// - the installed pkg-config file: `pkg-config --cflags --libs mbx`.
// Native and wasm flavours, whichever are selected (and built).
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { FLAVORS, ROOT, buildDir, emscripten, nodeArgs, selectedFlavors, toolEnv, versionAtLeast } from '../js/build.mjs';
import { runCommand } from '../js/run-program.mjs';

const flavors = selectedFlavors([]).filter((f) => f === 'native' || f === 'wasm');
const DEMO = path.join(ROOT, 'examples', 'demo.c');
// Program settings (not library flags): what CMakeLists.txt gives its programs.
const WASM_PROGRAM_FLAGS = ['-sEXIT_RUNTIME=1', '-sPTHREAD_POOL_SIZE=16', '-sINITIAL_MEMORY=128MB'];

function sh(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', env: toolEnv(), cwd: ROOT, ...opts });
  const out = `${r.stdout ?? ''}${r.stderr ?? ''}${r.error ?? ''}`;
  assert.equal(r.status, 0, `${cmd} ${args.join(' ')} failed:\n${out.slice(-3000)}`);
  return r.stdout;
}

async function runDemo(flavor, program) {
  const [cmd, args] = FLAVORS[flavor].wasm ?
    [process.execPath, [...nodeArgs(), program]] : [program, []];
  const r = await runCommand(cmd, args, { timeoutMs: 120000 });
  assert.equal(r.timedOut, false, 'watchdog');
  assert.equal(r.code, 0, r.stdout + r.stderr);
  const m = r.stdout.match(/^sent=(\d+) run=(\d+) canceled=(\d+) rejected=(\d+) lost=(-?\d+)$/m);
  assert.ok(m, `no summary line in:\n${r.stdout}`);
  assert.equal(Number(m[5]), 0);
  return m[0];
}

// A fresh work directory beside the flavour's build directory.
function workDir(flavor, what) {
  const dir = `${buildDir(flavor)}-${what}`;
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  return dir;
}

const em = flavors.includes('wasm') ? emscripten() : null;
const portSkip = !em ? 'wasm flavour not selected' :
  !versionAtLeast(em.parts, [3, 1, 54]) ? `Emscripten ${em.version} has no --use-port=<file> (3.1.54+)` : false;

it('wasm port: emcc --use-port=tools/ports/mbx.py -pthread', { skip: portSkip }, async () => {
  const dir = workDir('wasm', 'port');
  const out = path.join(dir, 'demo.js');
  sh('emcc', [`--use-port=${path.join(ROOT, 'tools', 'ports', 'mbx.py')}`, '-pthread', '-O2',
    ...WASM_PROGRAM_FLAGS, DEMO, '-o', out]);
  console.log(`    wasm port (Emscripten ${em.version}): ${await runDemo('wasm', out)}`);
});

// Installs the flavour's build into a fresh prefix; returns the prefix.
function install(flavor) {
  const prefix = path.join(workDir(flavor, 'install'), 'prefix');
  sh('cmake', ['--install', buildDir(flavor), '--prefix', prefix]);
  return prefix;
}

for (const flavor of flavors) {
  const wasm = FLAVORS[flavor].wasm;

  it(`${flavor} CMake package: install, then find_package(mbx) in another project`, async () => {
    const prefix = install(flavor);
    const config = path.join(prefix, 'lib', 'cmake', 'mbx');
    // The installed package must not point back into this checkout.
    const targets = readFileSync(path.join(config, 'mbxTargets.cmake'), 'utf8');
    assert.ok(!targets.includes(ROOT), `mbxTargets.cmake refers to the source tree:\n${targets}`);
    if (wasm) assert.ok(existsSync(path.join(prefix, 'share', 'mbx', 'mbx.js')));

    const dir = workDir(flavor, 'consumer');
    writeFileSync(path.join(dir, 'CMakeLists.txt'), `cmake_minimum_required(VERSION 3.20)
project(consumer C)
find_package(mbx 0.1 REQUIRED)
add_executable(demo ${JSON.stringify(DEMO)})
target_link_libraries(demo PRIVATE mbx::mbx)
if(EMSCRIPTEN)
  set_target_properties(demo PROPERTIES SUFFIX .js)
  target_link_options(demo PRIVATE ${WASM_PROGRAM_FLAGS.join(' ')})
endif()
`);
    const build = path.join(dir, 'build');
    // Emscripten's toolchain file searches packages only in its sysroot, so
    // name the package directory; natively the prefix path is enough.
    const args = ['-S', dir, '-B', build, '-G', 'Ninja', '-DCMAKE_BUILD_TYPE=Release',
      wasm ? `-Dmbx_DIR=${config}` : `-DCMAKE_PREFIX_PATH=${prefix}`];
    if (wasm) sh(path.join(emscripten().bin, 'emcmake'), ['cmake', ...args]);
    else sh('cmake', args);
    sh('cmake', ['--build', build]);
    console.log(`    ${flavor} find_package consumer: ${await runDemo(flavor, path.join(build, wasm ? 'demo.js' : 'demo'))}`);
  });

  it(`${flavor} pkg-config: cflags and libs of the installed mbx.pc`, async () => {
    const prefix = install(flavor);
    const env = { ...toolEnv(), PKG_CONFIG_PATH: path.join(prefix, 'lib', 'pkgconfig') };
    const flags = sh('pkg-config', ['--cflags', '--libs', 'mbx'], { env }).trim().split(/\s+/);
    assert.ok(flags.includes('-Wl,--wrap=pthread_create'), flags.join(' '));
    assert.ok(flags.includes('-Wl,--undefined=mbx_main_thread'), flags.join(' '));
    assert.ok(flags.includes('-pthread'), flags.join(' '));
    const js = flags.indexOf('--js-library');
    if (wasm) assert.equal(path.resolve(flags[js + 1]), path.join(prefix, 'share', 'mbx', 'mbx.js'), flags.join(' '));
    else assert.equal(js, -1);
    const dir = workDir(flavor, 'pkg-config');
    const out = path.join(dir, wasm ? 'demo.js' : 'demo');
    sh(wasm ? 'emcc' : 'cc', ['-O2', DEMO, '-o', out, ...flags, ...(wasm ? WASM_PROGRAM_FLAGS : [])]);
    console.log(`    ${flavor} pkg-config (${flags.join(' ')}): ${await runDemo(flavor, out)}`);
  });
}
