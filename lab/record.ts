/**
 * The run-directory record of everything a lab created (namespaces, /etc/netns entries,
 * processes). It is written before each creation, so `down` can undo a crashed `up`, and
 * `down` touches nothing that is not in it.
 */
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { RondoError } from '../common/errors.ts';

/** One thing the lab made. */
export type RecordEntry =
  | { kind: 'netns'; name: string }
  | { kind: 'etc-netns'; path: string }
  /** A link made in a lab netns outside `up` (a waypoint's veth); it goes with its netns. */
  | { kind: 'link'; netns: string; name: string }
  | { kind: 'process'; role: string; name: string; pid: number; startTime: string; log: string };

/** Default root of run directories. */
export const RUN_ROOT = '/run/rondo';

/** Writes a file atomically (tmp + rename) so readers never see half a file. */
export function writeAtomic(path: string, data: string, mode = 0o644): void {
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, data, { mode });
  renameSync(tmp, path);
}

/** The record file of one lab: `<runDir>/record.json`. */
export class RunRecord {
  readonly dir: string;
  readonly entries: RecordEntry[];
  private constructor(dir: string, entries: RecordEntry[]) {
    this.dir = dir;
    this.entries = entries;
  }

  /** Starts a new record; refuses when the lab already exists. */
  static create(dir: string, labName: string): RunRecord {
    if (existsSync(join(dir, 'record.json'))) {
      throw new RondoError('RONDO_E_LAB_EXISTS', `lab "${labName}" already exists (${dir}); run \`rondo lab down --name ${labName}\` first or choose another --name`);
    }
    mkdirSync(dir, { recursive: true });
    const r = new RunRecord(dir, []);
    r.save();
    return r;
  }

  /** Loads the record of an existing lab. */
  static load(dir: string, labName: string): RunRecord {
    const file = join(dir, 'record.json');
    if (!existsSync(file)) throw new RondoError('RONDO_E_LAB_NOT_FOUND', `no lab named "${labName}" (no ${file}); \`rondo lab status\` lists running labs`);
    const parsed = JSON.parse(readFileSync(file, 'utf8')) as { entries?: RecordEntry[] };
    return new RunRecord(dir, parsed.entries ?? []);
  }

  /** Records an entry durably (before the thing is created). */
  add(e: RecordEntry): void {
    this.entries.push(e);
    this.save();
  }

  /** Replaces the process entry with the same name (a restarted pod). */
  replaceProcess(e: Extract<RecordEntry, { kind: 'process' }>): void {
    const i = this.entries.findIndex((x) => x.kind === 'process' && x.name === e.name);
    if (i >= 0) this.entries[i] = e;
    else this.entries.push(e);
    this.save();
  }

  /** Drops the entries of things that were removed (a deleted waypoint's netns, veth, process). */
  remove(match: (e: RecordEntry) => boolean): void {
    const keep = this.entries.filter((e) => !match(e));
    if (keep.length === this.entries.length) return;
    this.entries.splice(0, this.entries.length, ...keep);
    this.save();
  }

  private save(): void {
    writeAtomic(join(this.dir, 'record.json'), JSON.stringify({ entries: this.entries }, null, 1) + '\n');
  }
}
