/**
 * End-to-end test labs: `withLab(t, specYaml)` brings up a lab with a unique short name,
 * registers its removal in t.teardown (which also runs when the test fails or times out),
 * and sweeps labs left by test processes that were killed outright.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { Lab, listLabs } from '../../lab/lab.ts';
import { parseLabSpec } from '../../lab/spec.ts';
import { RUN_ROOT } from '../../lab/record.ts';

/** The part of a tap Test this helper uses. */
export interface TestLike { teardown(fn: () => unknown): void }

/** Why e2e lab tests cannot run here, or undefined when they can. */
export function labSkipReason(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root (network namespaces)';
  const r = spawnSync('ip', ['netns', 'list']);
  if (r.error !== undefined || r.status !== 0) return '`ip netns` is not available';
  return undefined;
}

/** A unique lab name: `t` + 7 random lowercase characters (fits the 8-character limit). */
export function uniqueLabName(): string {
  return 't' + [...randomBytes(7)].map((b) => 'abcdefghijklmnopqrstuvwxyz0123456789'[b % 36]).join('');
}

function ownerAlive(dir: string): boolean {
  try {
    const pid = Number(readFileSync(join(dir, 'owner-pid'), 'utf8'));
    process.kill(pid, 0);
    return true;
  } catch { return false; }
}

/** Removes test labs whose owning test process is gone (killed before its teardown ran). */
export async function sweepOrphanTestLabs(runRoot = RUN_ROOT): Promise<string[]> {
  const swept: string[] = [];
  for (const name of listLabs(runRoot)) {
    const dir = join(runRoot, name);
    if (!existsSync(join(dir, 'owner-pid')) || ownerAlive(dir)) continue;
    await Lab.down(name, { runRoot });
    swept.push(name);
  }
  return swept;
}

/** Brings up a lab from spec YAML (its Lab document's name is replaced by a unique one) and removes it in teardown. */
export async function withLab(t: TestLike, specYaml: string, o: { name?: string } = {}): Promise<Lab> {
  await sweepOrphanTestLabs();
  const spec = parseLabSpec(specYaml, 'test-spec.yaml');
  spec.lab.name = o.name ?? uniqueLabName();
  t.teardown(async () => {
    if (existsSync(join(RUN_ROOT, spec.lab.name, 'record.json'))) await Lab.down(spec.lab.name);
  });
  return Lab.up(spec, { ownerPid: process.pid });
}
