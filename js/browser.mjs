// Drives headless Chromium over the DevTools protocol, with no dependency:
// Chromium's --remote-debugging-pipe speaks NUL-terminated JSON messages
// on its file descriptors 3 (commands in) and 4 (replies and events out),
// so no WebSocket is needed. Just what the browser tests and benchmarks
// use: open a page, evaluate, wait for a condition, collect the console,
// take a screenshot.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

// The Chromium to use, or null: $MBX_CHROMIUM if set (null if that path
// does not exist, e.g. MBX_CHROMIUM=none), else the first one installed.
export function findChromium() {
  const env = process.env.MBX_CHROMIUM;
  if (env) return existsSync(env) ? env : null;
  const candidates = ['/usr/bin/chromium', '/usr/bin/chromium-browser',
    '/usr/bin/google-chrome', '/usr/bin/google-chrome-stable'];
  return candidates.find((p) => existsSync(p)) ?? null;
}

export class Browser {
  static async launch({ executable = findChromium(), log = () => {} } = {}) {
    if (!executable) throw new Error('no Chromium found (install Debian\'s chromium, or set MBX_CHROMIUM)');
    const dir = mkdtempSync(path.join(os.tmpdir(), 'mbx-chromium-'));
    const args = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      '--disable-dev-shm-usage', '--hide-scrollbars', '--mute-audio',
      `--user-data-dir=${dir}`, '--remote-debugging-pipe', 'about:blank'];
    const proc = spawn(executable, args, { stdio: ['ignore', 'ignore', 'pipe', 'pipe', 'pipe'] });
    const b = new Browser(proc, dir, log);
    // Any command proves the pipe is up.
    await b.send('Browser.getVersion').then((v) => { b.version = v.product; });
    return b;
  }

  constructor(proc, dir, log) {
    this.proc = proc;
    this.dir = dir;
    this.log = log;
    this.nextId = 1;
    this.pending = new Map();
    this.listeners = new Set();
    this.stderr = '';
    this.exited = new Promise((resolve) => proc.once('exit', resolve));
    proc.stderr.on('data', (d) => { this.stderr = (this.stderr + d).slice(-4000); });
    proc.once('exit', (code, signal) => {
      for (const { reject } of this.pending.values()) {
        reject(new Error(`chromium exited (${code ?? signal}): ${this.stderr}`));
      }
      this.pending.clear();
    });
    let buf = '';
    proc.stdio[4].setEncoding('utf8');
    proc.stdio[4].on('data', (chunk) => {
      buf += chunk;
      let end;
      while ((end = buf.indexOf('\0')) >= 0) {
        const msg = JSON.parse(buf.slice(0, end));
        buf = buf.slice(end + 1);
        this.dispatch(msg);
      }
    });
  }

  dispatch(msg) {
    if (msg.id !== undefined) {
      const p = this.pending.get(msg.id);
      if (!p) return;
      this.pending.delete(msg.id);
      if (msg.error) p.reject(new Error(`${p.method}: ${msg.error.message}`));
      else p.resolve(msg.result);
      return;
    }
    for (const fn of this.listeners) fn(msg);
  }

  send(method, params = {}, sessionId) {
    const id = this.nextId++;
    const msg = { id, method, params, ...(sessionId ? { sessionId } : {}) };
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject, method });
      this.proc.stdio[3].write(JSON.stringify(msg) + '\0');
    });
  }

  // A new tab; resolves to a Page once it is attached.
  async newPage({ width = 1200, height = 900 } = {}) {
    const { targetId } = await this.send('Target.createTarget', { url: 'about:blank' });
    const { sessionId } = await this.send('Target.attachToTarget', { targetId, flatten: true });
    const page = new Page(this, targetId, sessionId);
    await page.send('Runtime.enable');
    await page.send('Page.enable');
    await page.send('Emulation.setDeviceMetricsOverride', { width, height, deviceScaleFactor: 1, mobile: false });
    return page;
  }

  async close() {
    if (this.proc.exitCode === null && this.proc.signalCode === null) {
      this.send('Browser.close').catch(() => {});
      const timer = setTimeout(() => this.proc.kill('SIGKILL'), 5000);
      await this.exited;
      clearTimeout(timer);
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}

export class Page {
  constructor(browser, targetId, sessionId) {
    this.browser = browser;
    this.targetId = targetId;
    this.sessionId = sessionId;
    this.console = []; // console lines and uncaught exceptions, in order
    this.listener = (msg) => {
      if (msg.sessionId !== sessionId) return;
      if (msg.method === 'Runtime.consoleAPICalled') {
        const text = msg.params.args.map((a) => a.value ?? a.description ?? '').join(' ');
        this.console.push(text);
        browser.log(`[console] ${text}`);
      } else if (msg.method === 'Runtime.exceptionThrown') {
        const d = msg.params.exceptionDetails;
        const text = `uncaught: ${d.exception?.description ?? d.text}`;
        this.console.push(text);
        browser.log(text);
      }
    };
    browser.listeners.add(this.listener);
  }

  send(method, params) {
    return this.browser.send(method, params, this.sessionId);
  }

  async goto(url) {
    const r = await this.send('Page.navigate', { url });
    if (r.errorText) throw new Error(`${url}: ${r.errorText}`);
  }

  // The value of a JS expression in the page (awaited if a promise).
  async evaluate(expression) {
    const r = await this.send('Runtime.evaluate', { expression, returnByValue: true, awaitPromise: true });
    if (r.exceptionDetails) {
      throw new Error(`${expression}: ${r.exceptionDetails.exception?.description ?? r.exceptionDetails.text}`);
    }
    return r.result.value;
  }

  // Polls until the expression is truthy; resolves to its value.
  async waitFor(expression, { timeoutMs = 60000, intervalMs = 100 } = {}) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      let v;
      try {
        v = await this.evaluate(expression);
      } catch { /* the page is navigating */ }
      if (v) return v;
      if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${expression}`);
      await new Promise((r) => setTimeout(r, intervalMs));
    }
  }

  async screenshot(file) {
    const { data } = await this.send('Page.captureScreenshot', { format: 'png' });
    writeFileSync(file, Buffer.from(data, 'base64'));
    return file;
  }

  async close() {
    this.browser.listeners.delete(this.listener);
    await this.browser.send('Target.closeTarget', { targetId: this.targetId }).catch(() => {});
  }
}

// Runs an Emscripten program in the harness page of js/serve.mjs until it
// exits; resolves to { exit, out, console }. noWaitAsync: serve it from
// /no-wait-async/ (Atomics.waitAsync deleted on the page and in workers).
export async function runInPage(browser, origin, jsPath, { args = [], noWaitAsync = false, timeoutMs = 120000 } = {}) {
  const page = await browser.newPage();
  try {
    const prefix = noWaitAsync ? '/no-wait-async' : '';
    const q = new URLSearchParams({ js: `${prefix}/${jsPath}`, args: args.join(',') });
    await page.goto(`${origin}${prefix}/harness.html?${q}`);
    let timedOut = false;
    await page.waitFor('document.body && document.body.dataset.state === "done"', { timeoutMs })
      .catch(() => { timedOut = true; });
    const out = await page.evaluate('document.getElementById("out") ? document.getElementById("out").textContent : ""');
    const exit = timedOut ? 'timeout' : await page.evaluate('document.body.dataset.exit');
    return { exit, out, console: page.console.slice(), timedOut };
  } finally {
    await page.close();
  }
}
