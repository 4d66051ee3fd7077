// The library's browser claims, in headless Chromium (js/browser.mjs drives
// it over the DevTools protocol; js/serve.mjs serves the pages on loopback
// with COOP/COEP), for the active Emscripten (the wasm flavour's build
// directory, build/wasm-<emcc version>/browser/):
// - test/browser/browser_claims.c on a page, with Atomics.waitAsync and
//   with it deleted on the page and in every worker;
// - test/thread programs whose claims hold on a page as under Node (the
//   proxying ones that block the main thread get MBX_EWOULDBLOCK there:
//   browser_claims covers that);
// - the demo page (examples/browser/): its settled line says lost=0, its
//   figures move, and a screenshot goes to build/browser-artifacts/.
// Skipped, with the reason, when there is no Chromium or no wasm flavour.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { ROOT, buildDir, emscripten, selectedFlavors } from '../js/build.mjs';
import { Browser, findChromium, runInPage } from '../js/browser.mjs';
import { NO_WAIT_ASYNC, demoPagePath, startServer } from '../js/serve.mjs';

const chromium = findChromium();
const skip = !chromium ? 'no Chromium: tools/setup-debian.sh installs Debian\'s chromium (or set MBX_CHROMIUM)'
  : !selectedFlavors([]).includes('wasm') ? 'the wasm flavour is not selected (MBX_FLAVORS)'
    : !emscripten() ? 'no emcc on PATH' : false;

describe('browser', { skip, timeout: 600000 }, () => {
  let browser, server, dir, rel;
  before(async () => {
    dir = path.join(buildDir('wasm'), 'browser');
    rel = (name) => path.relative(ROOT, path.join(dir, name)).split(path.sep).join('/');
    for (const f of ['browser_claims.js', 'demo_page.html']) {
      assert.ok(existsSync(path.join(dir, f)), `${rel(f)} is not built: node js/build.mjs --flavors wasm`);
    }
    server = await startServer();
    browser = await Browser.launch();
  });
  after(async () => {
    await browser?.close();
    await server?.close();
  });

  it('the server sends COOP/COEP and listens on loopback only', async () => {
    const r = await fetch(`${server.origin}/${rel('browser_claims.js')}`);
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('cross-origin-opener-policy'), 'same-origin');
    assert.equal(r.headers.get('cross-origin-embedder-policy'), 'require-corp');
    assert.equal(server.server.address().address, '127.0.0.1');
    const n = await fetch(`${server.origin}${NO_WAIT_ASYNC}/${rel('browser_claims.js')}`);
    assert.match(await n.text(), /^delete Atomics\.waitAsync;\n/);
  });

  const claims = [
    /^ok mbx_proxy_sync from the page's main thread: MBX_EWOULDBLOCK$/m,
    /^ok main-thread mailbox: /m,
    /^ok event-loop pthread: /m,
    /^ok callbacks main -> worker -> main: /m,
    /^ok pthreads blocked in sync calls to main served .*MBX_EWOULDBLOCK$/m,
    /^ok worker\.terminate\(\): /m,
    /^(ok pthread_kill\(SIGKILL\)|skip pthread_kill\(SIGKILL\): raises the signal on this release)/m,
    /^PASS browser_claims$/m,
  ];
  for (const noWaitAsync of [false, true]) {
    const mode = noWaitAsync ? 'absent' : 'native';
    it(`browser_claims, waitAsync ${noWaitAsync ? 'deleted on the page and in workers' : 'native'}`, async () => {
      const r = await runInPage(browser, server.origin, rel('browser_claims.js'),
        { args: ['--wait-async', mode], noWaitAsync, timeoutMs: 120000 });
      const report = `exit=${r.exit}\n${r.out}\nconsole:\n${r.console.join('\n')}`;
      assert.equal(r.exit, '0', report);
      for (const re of claims) assert.match(r.out, re, report);
      assert.match(r.out, new RegExp(`^page realm: waitAsync ${noWaitAsync ? '(absent|polyfilled)' : 'native'} `, 'm'));
      assert.match(r.out, new RegExp(`^worker realm: waitAsync ${noWaitAsync ? '(absent|polyfilled)' : 'native'}$`, 'm'));
      console.log(r.out.split('\n').filter((l) => /^(ok|skip)/.test(l)).map((l) => `    ${l}`).join('\n'));
    });
  }

  // main_thread and event_loop hide waitAsync themselves half-way (they
  // need it present at start); the others run both ways. (abnormal_death
  // is not here: its check of contexts_canceled races with the counter's
  // increment on main, after the caller was released, which a page loses
  // often; browser_claims covers killed workers.)
  const threadPrograms = [['main_thread', [false]], ['event_loop', [false]],
    ['runtime_exit', [false, true]], ['exit_paths', [false, true]]];
  for (const [name, modes] of threadPrograms) {
    for (const noWaitAsync of modes) {
      it(`test/thread/${name}.c on a page${noWaitAsync ? ', waitAsync deleted' : ''}`, async (t) => {
        const js = path.join(buildDir('wasm'), `${name}.js`);
        if (!existsSync(js)) return t.skip(`${path.relative(ROOT, js)} is not built`);
        const src = readFileSync(path.join(ROOT, 'test', 'thread', `${name}.c`), 'utf8');
        const args = (src.match(/^\/\/ mbx-test-args: (.*)$/m)?.[1] ?? '').split(/\s+/).filter(Boolean);
        const r = await runInPage(browser, server.origin, path.relative(ROOT, js).split(path.sep).join('/'),
          { args, noWaitAsync, timeoutMs: 120000 });
        assert.equal(r.exit, '0', `exit=${r.exit}\n${r.out}\nconsole:\n${r.console.join('\n')}`);
        assert.match(r.out, new RegExp(`^PASS ${name}`, 'm'));
      });
    }
  }

  for (const noWaitAsync of [false, true]) {
    it(`demo page, waitAsync ${noWaitAsync ? 'deleted' : 'native'}: live figures, lost=0`, async () => {
      const page = await browser.newPage();
      try {
        await page.goto(`${server.origin}${noWaitAsync ? NO_WAIT_ASYNC : ''}/${demoPagePath()}`);
        const sel = (id) => `document.getElementById(${JSON.stringify(id)})`;
        await page.waitFor(`${sel('settled')}.dataset.round >= 2`, { timeoutMs: 60000 }).catch((e) => {
          throw new Error(`${e.message}\nconsole:\n${page.console.join('\n')}`);
        });
        const before = JSON.parse(await page.evaluate(`${sel('raw')}.textContent`));
        await page.waitFor(`${sel('settled')}.dataset.round >= 3`, { timeoutMs: 60000 });
        await new Promise((r) => setTimeout(r, 500)); // a few more chart points
        const dom = await page.evaluate(`({
          settled: ${sel('settled')}.textContent, lost: ${sel('settled')}.dataset.lost,
          ledger: ${sel('ledger')}.textContent, status: ${sel('status')}.textContent,
          slots: [...${sel('slots')}.tBodies[0].rows].map((r) => [...r.cells].map((c) => c.textContent)),
          raw: ${sel('raw')}.textContent })`);
        const shot = path.join(ROOT, 'build', 'browser-artifacts',
          `demo_page-${emscripten().version}${noWaitAsync ? '-no-wait-async' : ''}.png`);
        mkdirSync(path.dirname(shot), { recursive: true });
        await page.screenshot(shot);
        const report = JSON.stringify(dom, null, 1);
        // The settled line: the library's counters with nothing in flight.
        const m = dom.settled.match(/^round (\d+) settled: sent=(\d+) = run (\d+) \+ canceled (\d+) \+ dropped (\d+) \+ pending (\d+) \+ abandoned (\d+); lost=(-?\d+)$/);
        assert.ok(m, report);
        const [sent, run, canceled, dropped, pending, abandoned, lost] = m.slice(2).map(Number);
        assert.equal(dom.lost, '0', report);
        assert.equal(lost, 0, report);
        assert.equal(sent, run + canceled + dropped + pending + abandoned, report);
        assert.ok(run > 0 && canceled > 0, report);
        // Live: four slots with their mailboxes, counters moving, workers
        // killed both ways and replaced, refusals by reason.
        assert.equal(dom.slots.length, 4, report);
        const now = JSON.parse(dom.raw);
        assert.ok(now.mbx.global.sent > before.mbx.global.sent, 'sent moves');
        assert.ok(now.mbx.global.run > before.mbx.global.run, 'run moves');
        assert.ok(now.demo.killed_cancel >= 3 && now.demo.killed_terminate >= 3, report);
        assert.ok(now.mbx.global.rejected_closed > 0, 'refused: closed');
        assert.deepEqual(now.mbx.mailboxes.filter((x) => x.watch >= 0).map((x) => x.watch), [0, 1, 2, 3]);
        assert.match(dom.status, /^Running: round/);
        console.log(`    ${dom.settled}\n    screenshot: ${path.relative(ROOT, shot)}`);
      } finally {
        await page.close();
      }
    });
  }
});
