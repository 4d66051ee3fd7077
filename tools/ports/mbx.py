# Emscripten port for mbx (per-thread mailboxes for pthreads), built from
# the checkout this file lives in. Emscripten 3.1.54 and later accept a port
# file by path; one flag at compile and at link time is all a program needs:
#
#   emcc --use-port=path/to/mbx/tools/ports/mbx.py -pthread main.c -o main.js
#
# It adds the include directory, builds libmbx (cached in Emscripten's cache
# under a name that changes with the sources, so edits rebuild it), and at
# link time adds -Wl,--wrap=pthread_create (every pthread gets a mailbox),
# -Wl,--undefined=mbx_main_thread (so does the main thread) and
# -Wl,--undefined=mbx__promise_js_call (Module.mbxCall, <mbx/promise.h>) and
# --js-library src/mbx.js (event-loop delivery, promises).
import glob
import hashlib
import os

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..'))
SOURCE_DIR = os.path.join(ROOT, 'system', 'lib', 'mbx')
INCLUDE_DIR = os.path.join(ROOT, 'system', 'include')
JS_LIBRARY = os.path.join(ROOT, 'src', 'mbx.js')

DESCRIPTION = 'mbx: per-thread mailboxes for pthreads, built from ' + ROOT


# The library's layers (see CMakeLists.txt); sources and private headers.
LAYERS = ['platform', 'core', 'proxy', 'pthread', 'snapshot', 'broadcast', 'lifecycle', 'promise']


def _layer_files(ext):
  return sorted(f for layer in LAYERS for f in glob.glob(os.path.join(SOURCE_DIR, layer, '*.' + ext)))


def _sources():
  return _layer_files('c')


def _lib_name():
  # Content-addressed: the cache keeps a library per version of the sources.
  digest = hashlib.sha256()
  inputs = _sources() + _layer_files('h') + sorted(glob.glob(os.path.join(INCLUDE_DIR, 'mbx', '*.h'))) + [__file__]
  for path in inputs:
    digest.update(os.path.relpath(path, ROOT).encode())
    with open(path, 'rb') as f:
      digest.update(f.read())
  return f'libmbx-{digest.hexdigest()[:16]}.a'


def get(ports, settings, shared):
  def create(output_path):
    srcs = [os.path.relpath(s, SOURCE_DIR) for s in _sources()]
    ports.build_port(SOURCE_DIR, output_path, 'mbx', includes=[INCLUDE_DIR], srcs=srcs,
                     flags=['-pthread', '-std=c11', '-Wall', '-Wextra'])

  # The list goes to wasm-ld as is: besides the library, the wrap flag that
  # makes every pthread_create (and thrd_create, std::thread) open a mailbox,
  # and the symbol that pulls in the main thread's mailbox.
  return [shared.cache.get_lib(_lib_name(), create, what='port'),
          '--wrap=pthread_create', '--undefined=mbx_main_thread',
          '--undefined=mbx__promise_js_call']


def clear(ports, settings, shared):
  shared.cache.erase_lib(_lib_name())


def linker_setup(ports, settings):
  settings.JS_LIBRARIES.append(JS_LIBRARY)


def process_args(ports):
  return ['-isystem', INCLUDE_DIR]


def show():
  return f'mbx (--use-port={os.path.abspath(__file__)})'
