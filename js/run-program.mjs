// Runs one built program of a flavour with a watchdog, for the Node specs
// (demo, valgrind, packaging). The C tests themselves run under CTest
// (test/CMakeLists.txt), which also sets the sanitizers' options.
import { spawn } from 'node:child_process';
import path from 'node:path';
import { FLAVORS, ROOT, buildDir, nodeArgs, toolEnv } from './build.mjs';

export function programCommand(flavor, name, args = []) {
  const dir = buildDir(flavor);
  if (FLAVORS[flavor].wasm) {
    return { cmd: process.execPath, args: [...nodeArgs(), path.join(dir, `${name}.js`), ...args] };
  }
  return { cmd: path.join(dir, name), args };
}

// Spawns a command with a watchdog: killed and reported as timedOut if it
// has not exited after timeoutMs.
export function runCommand(cmd, args, { timeoutMs = 300000, env = toolEnv(), cwd = ROOT } = {}) {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { env, cwd });
    let stdout = '', stderr = '', timedOut = false;
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr += d; });
    const timer = setTimeout(() => { timedOut = true; child.kill('SIGKILL'); }, timeoutMs);
    child.on('error', (e) => { stderr += String(e); });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, timedOut });
    });
  });
}

// Runs the program `name` of a flavour from its build directory (wasm: its
// .js under Node). `wrapper` is a command prefix, e.g. ['valgrind', '--quiet'].
export function runProgram(flavor, name, args = [], { timeoutMs, wrapper = [] } = {}) {
  const { cmd, args: full } = programCommand(flavor, name, args);
  const [first, ...rest] = [...wrapper, cmd, ...full];
  return runCommand(first, rest, { timeoutMs });
}
