// A static file server for the browser pages (demo page, browser tests),
// on the loopback interface only, with the two headers that give a page
// SharedArrayBuffer (and so pthreads): without them 3.1.6 fails with
// "SharedArrayBuffer is not defined" and 5.0.7 with a DataCloneError.
//   Cross-Origin-Opener-Policy: same-origin
//   Cross-Origin-Embedder-Policy: require-corp
// It serves the repository's files. Two extras for tests and benchmarks:
// - /no-wait-async/<path>: the same file, but a .js file starts with
//   `delete Atomics.waitAsync;`, so a page loaded from there runs without
//   it on the page and in every worker (workers load their script from the
//   page's directory, so through the same prefix);
// - /harness.html?js=<path>&args=a,b: a page that runs the program <path>
//   (an Emscripten .js) and writes its output into <pre id="out">, its exit
//   code into document.body.dataset.exit.
// Usage: node js/serve.mjs [--port N] [--no-build]
//   builds the wasm flavour (the demo page) and prints the demo's URL.
import { createServer } from 'node:http';
import { readFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ROOT, buildDir, buildFlavor } from './build.mjs';

const TYPES = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8', '.wasm': 'application/wasm',
  '.json': 'application/json', '.png': 'image/png', '.css': 'text/css',
  '.txt': 'text/plain; charset=utf-8', '.md': 'text/plain; charset=utf-8',
};
export const NO_WAIT_ASYNC = '/no-wait-async';
const PRELUDE = 'delete Atomics.waitAsync;\n';

const HARNESS = `<!doctype html>
<html><head><meta charset="utf-8"><title>mbx test</title></head>
<body data-state="running"><pre id="out"></pre>
<script>
(function() {
  var q = new URLSearchParams(location.search);
  var out = document.getElementById('out');
  function line(t) { out.textContent += t + '\\n'; }
  function done(code) {
    if (document.body.dataset.state !== 'running') return;
    document.body.dataset.exit = String(code);
    document.body.dataset.state = 'done';
  }
  window.onerror = function(msg) { line('uncaught: ' + msg); };
  window.Module = {
    arguments: (q.get('args') || '').split(',').filter(Boolean),
    print: function(t) { line(t); console.log(t); },
    printErr: function(t) { line(t); console.error(t); },
    onExit: function(code) { done(code); },
    onAbort: function(what) { line('abort: ' + what); done('abort'); },
  };
  var s = document.createElement('script');
  s.src = q.get('js');
  s.onerror = function() { line('cannot load ' + s.src); done('load'); };
  document.body.appendChild(s);
})();
</script></body></html>
`;

function send(res, status, body, type) {
  res.writeHead(status, {
    'Content-Type': type,
    'Cross-Origin-Opener-Policy': 'same-origin',
    'Cross-Origin-Embedder-Policy': 'require-corp',
    'Cross-Origin-Resource-Policy': 'same-origin',
    'Cache-Control': 'no-store',
  });
  res.end(body);
}

async function handle(req, res, root) {
  const url = new URL(req.url, 'http://localhost');
  let p = decodeURIComponent(url.pathname);
  let noWaitAsync = false;
  if (p === NO_WAIT_ASYNC || p.startsWith(NO_WAIT_ASYNC + '/')) {
    noWaitAsync = true;
    p = p.slice(NO_WAIT_ASYNC.length) || '/';
  }
  if (p === '/harness.html') return send(res, 200, HARNESS, TYPES['.html']);
  const file = path.join(root, path.normalize(p));
  if (file !== root && !file.startsWith(root + path.sep)) return send(res, 403, 'forbidden', TYPES['.txt']);
  let body;
  try {
    body = await readFile(file);
  } catch {
    return send(res, 404, `not found: ${p}`, TYPES['.txt']);
  }
  const ext = path.extname(file);
  if (noWaitAsync && ext === '.js') body = Buffer.concat([Buffer.from(PRELUDE), body]);
  send(res, 200, body, TYPES[ext] ?? 'application/octet-stream');
}

// Starts a server; resolves to { server, origin, close() }. port 0 picks one.
export function startServer({ port = 0, root = ROOT } = {}) {
  const server = createServer((req, res) => {
    handle(req, res, root).catch((e) => send(res, 500, String(e), TYPES['.txt']));
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => {
      const origin = `http://127.0.0.1:${server.address().port}`;
      resolve({ server, origin, close: () => new Promise((r) => server.close(r)) });
    });
  });
}

// Where the demo page of the active toolchain is built, relative to ROOT.
export function demoPagePath() {
  return path.relative(ROOT, path.join(buildDir('wasm'), 'browser', 'demo_page.html')).split(path.sep).join('/');
}

if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  const argv = process.argv.slice(2);
  const i = argv.indexOf('--port');
  const port = i >= 0 ? Number(argv[i + 1]) : 8080;
  if (!argv.includes('--no-build')) buildFlavor('wasm');
  const page = demoPagePath();
  if (!existsSync(path.join(ROOT, page))) console.error(`warning: ${page} is not built`);
  const { origin } = await startServer({ port });
  console.log(`serving ${ROOT} on ${origin} (loopback only; COOP/COEP headers set)`);
  console.log(`demo page:              ${origin}/${page}`);
  console.log(`same, without waitAsync: ${origin}${NO_WAIT_ASYNC}/${page}`);
}
