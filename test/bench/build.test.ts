// The bench runs the mesh from a production build: it must compile and its entry points must load.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { rmSync } from 'node:fs';
import { buildMesh, BUILD_DIR } from '../../bench/run.ts';
import { WORKER_ENTRY } from '../../node-agent/agent.ts';

t.test('buildMesh compiles the mesh and the compiled entry points load every module', async (t) => {
  const lines: string[] = [];
  // Its own directory: the e2e build test and a bench may build at the same time.
  const dir = buildMesh((l) => lines.push(l), `${BUILD_DIR}-unit-${process.pid}`);
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  t.match(lines[0], /tsc -p tsconfig\.build\.json/);
  for (const part of ['node-agent', 'controller']) {
    const main = join(dir, part, 'main.js');
    t.ok(existsSync(main), `${part}/main.js built`);
    const r = spawnSync(process.execPath, [main, '--help'], { encoding: 'utf8' });
    t.equal(r.status, 0, `${part} --help exits 0 from the build: ${r.stderr}`);
    t.match(r.stdout + r.stderr, /usage/i);
  }
  t.equal(WORKER_ENTRY, './worker.ts', 'from the sources the agent forks worker.ts');
  const built = await import(pathToFileURL(join(dir, 'node-agent', 'agent.js')).href) as { WORKER_ENTRY: string };
  t.equal(built.WORKER_ENTRY, './worker.js', 'the build forks worker.js');
  t.ok(existsSync(join(dir, 'node-agent', built.WORKER_ENTRY)), 'and it exists');
});
