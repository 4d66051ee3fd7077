// The library's layers point one way: platform/ <- core/ <- {proxy/,
// pthread/}. The core calls upper layers only through hooks they register
// (core/layer.h), so:
// - a native program that uses only <mbx/mailbox.h> links no proxy object
//   (nm on the linked binaries of test/core);
// - no object of platform/ or core/ refers to a symbol of proxy/ or pthread/;
// - no file outside core/ includes the core's private layout (record.h);
// - MBX_ASSERT is compiled into the sanitizer flavours and out of release.
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { FLAVORS, ROOT, buildDir, selectedFlavors } from '../js/build.mjs';

const LIB = path.join(ROOT, 'system', 'lib', 'mbx');
const natives = selectedFlavors([]).filter((f) => !FLAVORS[f].wasm);

function nm(args) {
  const r = spawnSync('nm', args, { encoding: 'utf8' });
  assert.equal(r.status, 0, `nm ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

it('no file outside core/ includes the core\'s private layout', () => {
  for (const layer of readdirSync(LIB)) {
    if (layer === 'core') continue;
    for (const file of readdirSync(path.join(LIB, layer))) {
      const text = readFileSync(path.join(LIB, layer, file), 'utf8');
      assert.doesNotMatch(text, /#include\s+"[^"]*(record|queue)\.h"/, `${layer}/${file}`);
    }
  }
});

for (const flavor of natives) {
  const dir = buildDir(flavor);
  const skip = existsSync(path.join(dir, 'handles')) ? false : `${flavor} not built`;

  it(`${flavor}: programs using only <mbx/mailbox.h> link no proxy object`, { skip }, () => {
    for (const program of ['handles', 'stress_accounting']) {
      const symbols = nm([path.join(dir, program)]);
      const proxy = symbols.split('\n').filter((l) => /proxy/i.test(l));
      assert.deepEqual(proxy, [], `${program} links proxy symbols`);
    }
    // The check itself works: a proxy program does have them.
    assert.match(nm([path.join(dir, 'proxy_basic')]), /mbx_proxy_sync/);
  });

  it(`${flavor}: platform/ and core/ objects refer to no upper layer`, { skip }, () => {
    // `nm -A` prefixes each line with archive:member.
    const lines = nm(['-A', '-u', path.join(dir, 'libmbx_core.a')]).split('\n');
    const core = readdirSync(path.join(LIB, 'core')).concat(readdirSync(path.join(LIB, 'platform')))
      .filter((f) => f.endsWith('.c')).map((f) => `${f}.o`);
    const bad = lines.filter((l) => {
      const member = (l.split(':')[1] ?? '');
      return core.includes(member) && /mbx_+(proxy|event_loop|runtime|shutdown|js_)/.test(l);
    });
    assert.deepEqual(bad, []);
  });

  it(`${flavor}: MBX_ASSERT ${FLAVORS[flavor].sanitize ? 'compiled in' : 'compiled out'}`, { skip }, () => {
    const uses = nm(['-A', '-u', path.join(dir, 'libmbx_core.a')])
      .split('\n').filter((l) => /mbx__assert_failed/.test(l));
    if (FLAVORS[flavor].sanitize) assert.ok(uses.length > 0, 'no object checks an invariant');
    else assert.deepEqual(uses, []);
  });
}
