// Model checking of the mailbox protocol (test/model/mbx.pml, docs/model.md)
// and of the proxy layer's reply handshake (test/model/reply.pml):
// Spin explores every interleaving at small bounds. The real model must have
// no error; each mutant (a known bug class switched on with -DMUTANT_x) must
// give a counterexample, or the model would not be a check. Needs `spin`
// (tools/setup-debian.sh) and gcc. MBX_MODEL_DEEP=1 adds the larger bounds.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { ROOT } from '../js/build.mjs';

const run = promisify(execFile);
const MODELS = path.join(ROOT, 'test', 'model');

// One verification: spin -a with defines, gcc pan.c, run pan. `live` checks
// the ltl property (acceptance cycles under weak fairness); otherwise safety
// (assertions and invalid end states, no claim). Memory is capped so a bound
// that explodes fails the test instead of the machine.
async function verify(defines, { live = false, quick = false, model = 'mbx.pml' } = {}) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'mbx-model-'));
  try {
    copyFileSync(path.join(MODELS, model), path.join(dir, model));
    await run('spin', [...defines.map((d) => `-D${d}`), '-a', model], { cwd: dir });
    // Counterexample searches are short: -O0 compiles pan.c 5x faster.
    // The deep bounds need more than 2 GB (close from outside, all: 2.24).
    const memlim = process.env.MBX_MODEL_DEEP ? 4096 : 2048;
    const cflags = [quick ? '-O0' : '-O2', '-w', '-DCOLLAPSE', `-DMEMLIM=${memlim}`];
    cflags.push(...(live ? ['-DNFAIR=3'] : ['-DSAFETY', '-DNOCLAIM']));
    await run('gcc', [...cflags, '-o', 'pan', 'pan.c'], { cwd: dir });
    const args = ['-m400000', ...(live ? ['-a', '-f'] : [])];
    // pan exits 0 even when it finds errors; its report says how many.
    const { stdout } = await run('./pan', args, { cwd: dir, maxBuffer: 1 << 24 });
    const num = (re) => Number((stdout.match(re) ?? [])[1]);
    const r = {
      errors: num(/errors: (\d+)/),
      stored: num(/(\d+) states, stored/),
      transitions: num(/(\d+) transitions \(= stored\+matched\)/),
      depth: num(/depth reached (\d+)/),
      first: (stdout.match(/^pan:1: (.*)$/m) ?? [])[1] ?? '',
      complete: !/max search depth too small|out of memory|search not completed/i.test(stdout),
      stdout,
    };
    assert.ok(Number.isFinite(r.errors) && Number.isFinite(r.stored), `pan output:\n${stdout}`);
    return r;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const show = (name, r) =>
  console.log(`    model ${name}: errors=${r.errors} states=${r.stored} ` +
              `${Number.isFinite(r.transitions) ? `transitions=${r.transitions} ` : ""}depth=${r.depth}${r.first ? ` first: ${r.first}` : ''}`);

// Bounds (docs/model.md). "full": 1 async sender + 1 sync caller (timed or
// not) + 1 mbx_hold user, a target with capacity 1 that exits, and a reuse
// of its record by a new thread. "two-async": 2 async senders + holder, two
// receive calls before the exit. "close from outside": the runtime-exit
// closer races the owner. "live": the ltl property without the holder.
const CHECKS = [
  { name: 'safety full', defines: [] },
  { name: 'safety two-async', defines: ['NASYNC=2', 'NSYNC=0', 'ROUNDS=2'] },
  { name: 'safety close from outside', defines: ['OUTSIDE=1', 'NASYNC=2', 'NSYNC=0', 'HOLDER=0'] },
  { name: 'safety close from outside, sync', defines: ['OUTSIDE=1', 'NASYNC=0', 'HOLDER=0'] },
  { name: 'liveness', defines: ['HOLDER=0'], live: true },
  { name: 'liveness close from outside', defines: ['OUTSIDE=1', 'NSYNC=0', 'HOLDER=0'], live: true },
  { name: 'safety capacity setter vs reuse', defines: ['CAPSET=1', 'NSYNC=0', 'HOLDER=0'] },
  // An orphan closer racing the owner's exit path (issue 18 item 6).
  { name: 'safety orphan closer vs exit', defines: ['ORPHAN=1', 'NASYNC=2', 'NSYNC=0', 'HOLDER=0'] },
  // The serving sync caller's reply handshake (one call: a small model).
  { name: 'reply handshake', defines: [], model: 'reply.pml', minStates: 100 },
];
if (process.env.MBX_MODEL_DEEP) {
  CHECKS.push({ name: 'safety close from outside, all', defines: ['OUTSIDE=1', 'HOLDER=0'] });
  CHECKS.push({ name: 'safety full rounds=2', defines: ['ROUNDS=2'] });
  CHECKS.push({ name: 'safety three-async', defines: ['NASYNC=3', 'NSYNC=0', 'HOLDER=0'] });
  CHECKS.push({ name: 'liveness with holder', defines: [], live: true });
  CHECKS.push({ name: 'safety orphan closer vs exit, sync', defines: ['ORPHAN=1', 'HOLDER=0'] });
}

// Each mutant re-creates a bug class; `live` ones are lost wake-ups that
// only a liveness check can call an error.
const MUTANTS = [
  { name: 'MUTANT_NO_GATE_COUNT', defines: [] },
  { name: 'MUTANT_NO_INFLIGHT_WAIT', defines: [] },
  // Issue 17: a send counts itself in pending before it reads the gate; the
  // other order lets a closer miss a sender that then pushes.
  { name: 'MUTANT_CHECK_BEFORE_COUNT', defines: [] },
  { name: 'MUTANT_RETIRE_IGNORES_HOLDS', defines: [] },
  { name: 'MUTANT_NO_GEN_CHECK', defines: [] },
  { name: 'MUTANT_NO_CONSUMER_TOKEN', defines: ['OUTSIDE=1', 'HOLDER=0'] },
  { name: 'MUTANT_WAKE_BEFORE_PUBLISH', defines: ['HOLDER=0'], live: true },
  { name: 'MUTANT_LOST_WAKEUP', defines: ['HOLDER=0'], live: true },
  // Bugs this model found in the C code, now fixed; each mutant is the old
  // code (docs/model.md, "Findings"): a close from outside that left a
  // sleeping owner asleep, a refusal counted into the next life, a
  // check-then-store mbx_set_capacity.
  { name: 'MUTANT_NO_CLOSE_WAKE', defines: ['OUTSIDE=1', 'NSYNC=0', 'HOLDER=0'], live: true },
  { name: 'MUTANT_STALE_STATS', defines: [] },
  { name: 'MUTANT_STALE_CAPACITY', defines: ['CAPSET=1', 'NSYNC=0', 'HOLDER=0'] },
  // Issue 18 item 6: the owner's hold released twice (the old fetch_and
  // by the owner's exit after an orphan closer), and a release by CAS
  // whose owner touches the record without pinning it first.
  { name: 'MUTANT_OWNER_RELEASE_TWICE', defines: ['ORPHAN=1', 'NSYNC=0', 'HOLDER=0'] },
  { name: 'MUTANT_NO_PIN', defines: ['ORPHAN=1', 'NSYNC=0', 'HOLDER=0'] },
  // Issue 18 item 22a: the owner's exit does not drain what a closer from
  // outside that gave up on it (MBX_EBUSY) left queued.
  { name: 'MUTANT_EXIT_NO_TAKEOVER', defines: ['OUTSIDE=1', 'NASYNC=2', 'NSYNC=0', 'HOLDER=0'] },
  // Issue 17: mbx_wait's spin on the queue's head link without the consumer
  // token; a closer from outside releases the head node under its loads.
  { name: 'MUTANT_SPIN_NO_TOKEN', defines: ['OUTSIDE=1', 'NASYNC=2', 'NSYNC=0', 'HOLDER=0'] },
  // Issue 17, reply.pml: the old caller that handed a seen outcome back to
  // the reporter (which then sent a reply), and a caller that would skip
  // the reply without having seen the outcome (it would sleep for ever).
  { name: 'MUTANT_SPIN_HANDS_BACK', defines: [], model: 'reply.pml' },
  { name: 'MUTANT_SKIP_WITHOUT_OUTCOME', defines: [], model: 'reply.pml' },
  // A caller that handed the decision back (its spin ran out) and sleeps
  // for the reply without re-reading the state: the reporter read WATCHING
  // before the hand-back and sends nothing.
  { name: 'MUTANT_NO_RECHECK', defines: [], model: 'reply.pml' },
];

describe('spin model', { concurrency: 2 }, () => {
  for (const c of CHECKS) {
    it(`${c.name}: no error, complete search`, { timeout: 600_000 }, async () => {
      const r = await verify(c.defines, c);
      show(c.name, r);
      assert.equal(r.errors, 0, r.stdout);
      assert.ok(r.complete, r.stdout);
      assert.ok(r.stored > (c.minStates ?? 1000), 'suspiciously small state space');
    });
  }
  for (const m of MUTANTS) {
    it(`${m.name}: counterexample`, { timeout: 600_000 }, async () => {
      const r = await verify([m.name, ...m.defines], { ...m, quick: true });
      show(m.name, r);
      assert.ok(r.errors >= 1, `${m.name} was not caught:\n${r.stdout}`);
      if (m.live) assert.match(r.first, /acceptance cycle/);
    });
  }
});
