// The bench runs the mesh from a production build: it must compile and its entry points must load.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { buildMesh } from '../../bench/run.ts';

t.test('buildMesh compiles the mesh and the compiled entry points load every module', (t) => {
  const lines: string[] = [];
  const dir = buildMesh((l) => lines.push(l));
  t.match(lines[0], /tsc -p tsconfig\.build\.json/);
  for (const part of ['node-agent', 'controller']) {
    const main = join(dir, part, 'main.js');
    t.ok(existsSync(main), `${part}/main.js built`);
    const r = spawnSync(process.execPath, [main, '--help'], { encoding: 'utf8' });
    t.equal(r.status, 0, `${part} --help exits 0 from the build: ${r.stderr}`);
    t.match(r.stdout + r.stderr, /usage/i);
  }
  t.end();
});
