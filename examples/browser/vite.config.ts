import { createReadStream, existsSync, readFileSync, statSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { join } from 'node:path';
import { defineConfig, type Plugin } from 'vite';
import { caseDir } from '@slmkit/fixtures';

/** The checkpoints the page can load, served under /models/<name>/ (from the repository's test fixtures). */
const MODELS = ['llama'];
/** What a checkpoint folder may hold; anything else under /models/ is a 404. */
const MODEL_FILES = ['config.json', 'model.safetensors', 'input_ids.json', 'expected.json'];

/**
 * Serves the fixture checkpoints at /models/<name>/<file> in `vite` (dev) and `vite preview`, and copies them into
 * the build. Every other path under /models/ answers 404, so `fromPretrained` sees "no sharded index, no
 * tokenizer" exactly as it would on a static host or the Hugging Face Hub (and not the SPA fallback page).
 */
function fixtureModels(): Plugin {
  const fileFor = (pathname: string): string | null => {
    const m = /^\/models\/([^/]+)\/([^/]+)$/.exec(pathname);
    if (m == null || !MODELS.includes(m[1]) || !MODEL_FILES.includes(m[2])) return null;
    const file = join(caseDir(m[1]), m[2]);
    return existsSync(file) ? file : null;
  };
  const middleware = (req: IncomingMessage, res: ServerResponse, next: () => void): void => {
    const pathname = new URL(req.url ?? '/', 'http://localhost').pathname;
    if (!pathname.startsWith('/models/')) return next();
    const file = fileFor(pathname);
    if (file == null || (req.method !== 'GET' && req.method !== 'HEAD')) {
      res.statusCode = 404;
      res.end('not found');
      return;
    }
    res.setHeader('Content-Type', file.endsWith('.json') ? 'application/json' : 'application/octet-stream');
    res.setHeader('Content-Length', String(statSync(file).size));
    if (req.method === 'HEAD') {
      res.end();
      return;
    }
    createReadStream(file).pipe(res);
  };
  return {
    name: 'slmkit-fixture-models',
    configureServer(server) {
      server.middlewares.use(middleware);
    },
    configurePreviewServer(server) {
      server.middlewares.use(middleware);
    },
    generateBundle() {
      for (const name of MODELS) {
        for (const f of MODEL_FILES) {
          const file = join(caseDir(name), f);
          if (existsSync(file)) this.emitFile({ type: 'asset', fileName: `models/${name}/${f}`, source: readFileSync(file) });
        }
      }
    },
  };
}

/**
 * `@slmkit/core` and `@slmkit/models` import Dawn (`webgpu`), `@tensorflow/tfjs-node-gpu` and Node's file system
 * (`node:fs/promises`, `node:path`, `node:url`) only on code paths that run in Node (the backends of Node, and
 * checkpoint paths rather than URLs). In the page those imports resolve to an empty module instead of being bundled.
 */
function nodeOnlyModules(): Plugin {
  const packages = new Set(['webgpu', '@tensorflow/tfjs-node-gpu']);
  const prefix = '\0slmkit-node-only:';
  return {
    name: 'slmkit-node-only-modules',
    enforce: 'pre',
    resolveId(id) {
      return packages.has(id) || id.startsWith('node:') ? prefix + id : null;
    },
    load(id) {
      return id.startsWith(prefix) ? 'export default {};' : null;
    },
  };
}

export default defineConfig({
  plugins: [fixtureModels(), nodeOnlyModules()],
  resolve: {
    // One tfjs engine for the page, whichever package imports it.
    dedupe: ['@tensorflow/tfjs-core'],
  },
  optimizeDeps: {
    // Known up front, so the dev server never reloads the page to add a dependency it discovered late.
    include: [
      '@tensorflow/tfjs-core',
      '@tensorflow/tfjs-core/dist/register_all_gradients.js',
      '@tensorflow/tfjs-backend-cpu',
      '@tensorflow/tfjs-backend-wasm',
      '@tensorflow/tfjs-backend-webgpu',
      '@huggingface/tokenizers',
    ],
    exclude: ['webgpu', '@tensorflow/tfjs-node-gpu'],
  },
  build: {
    target: 'es2022',
    chunkSizeWarningLimit: 4096,
  },
});
