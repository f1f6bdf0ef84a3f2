// The error-code registry: every code used anywhere is registered, every registered code is used.
import t from 'tap';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { ERROR_CODES, InvalidInputError, RondoError, isErrorCode, reasonLabel } from '../../common/errors.ts';

const ROOT = new URL('../..', import.meta.url).pathname;
const SKIP = new Set(['node_modules', 'dist', '.git', '.tap', 'coverage', 'results']);

function sources(dir: string, out: string[] = []): string[] {
  for (const name of readdirSync(dir)) {
    if (SKIP.has(name)) continue;
    const p = join(dir, name);
    if (statSync(p).isDirectory()) sources(p, out);
    else if (/\.(ts|js|md|yaml|sh)$/.test(name)) out.push(p);
  }
  return out;
}

// Codes as they appear in the tree: whole words, so `RONDO_E_…` in prose is not one.
const uses = new Map<string, string[]>();
for (const file of sources(ROOT)) {
  if (file.endsWith('common/errors.ts') || file.endsWith('test/common/errors.test.ts')) continue;
  for (const m of readFileSync(file, 'utf8').matchAll(/\bRONDO_E_[A-Z0-9_]*[A-Z0-9]\b/g)) {
    const list = uses.get(m[0]) ?? [];
    list.push(relative(ROOT, file));
    uses.set(m[0], list);
  }
}

t.test('every code used in the repository is registered', (t) => {
  const unregistered = [...uses].filter(([code]) => !isErrorCode(code)).map(([code, files]) => `${code} (${[...new Set(files)].join(', ')})`);
  t.same(unregistered, [], 'add it to ERROR_CODES, or use the registered code for that cause');
  t.end();
});

t.test('every registered code is used somewhere and has a one-line cause', (t) => {
  for (const [code, cause] of Object.entries(ERROR_CODES)) {
    t.ok(uses.has(code), `${code} is used outside the registry`);
    t.ok(cause.length > 10 && !cause.includes('\n'), `${code} has a one-line cause`);
  }
  t.end();
});

t.test('RondoError takes registered codes only; reasonLabel makes them metric labels', (t) => {
  // @ts-expect-error an unregistered code does not type-check
  const e = new RondoError('RONDO_E_NOT_A_CODE', 'x');
  t.equal(e.code, 'RONDO_E_NOT_A_CODE', 'at run time the value passes through (the type check is the guard)');
  t.equal(new InvalidInputError('bad').code, 'RONDO_E_INVALID');
  t.ok(isErrorCode('RONDO_E_POLICY_DENIED'));
  t.notOk(isErrorCode('RONDO_E_NOT_A_CODE'));
  t.notOk(isErrorCode('toString'), 'inherited names are not codes');
  t.notOk(isErrorCode(42));
  t.equal(reasonLabel('RONDO_E_POLICY_DENIED'), 'policy_denied');
  t.equal(reasonLabel('RONDO_E_PLAINTEXT_NOT_ALLOWED'), 'plaintext_not_allowed');
  t.end();
});
