/**
 * File source: a directory (recursively) of Kubernetes YAML/JSON manifests, e.g. the lab's
 * state directory, reflected into the store. fs.watch triggers a rescan; a periodic rescan
 * catches what the watcher misses (editors' rename dance, network filesystems, overflow).
 *
 * Errors are per file and per document, naming file, line and field. A document that is
 * not a valid object is left out alone; the other documents of the file still apply. A file
 * that stops parsing as YAML at all keeps its previous objects (a half-written file must not
 * delete a workload from the mesh); deleting the file removes them.
 */
import { watch, type FSWatcher } from 'node:fs';
import { readdir, readFile, stat } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { parseAllDocuments, LineCounter, isMap, isScalar, isSeq } from 'yaml';
import type { KubeObject, ResourceSink, Source } from './types.ts';
import type { Logger } from '../../common/log.ts';
import { RondoError, errorMessage } from '../../common/errors.ts';

/** One problem found in a manifest file. */
export interface FileProblem {
  file: string;
  line: number;
  message: string;
}

/** Options of the file source. */
export interface FileSourceOptions {
  dir: string;
  sink: ResourceSink;
  log: Logger;
  /** Periodic full rescan, ms (default 2000; 0 disables). */
  rescanMs?: number;
  /** Wait after a watch event before rescanning, ms (default 20): batches editors' writes. */
  settleMs?: number;
  /** Called after every scan with the current problems (for metrics/status). */
  onProblems?: (problems: readonly FileProblem[]) => void;
  /** Called when the watcher fails and is restarted. */
  onWatchRestart?: () => void;
}

interface FileState {
  mtimeMs: number;
  size: number;
  objects: KubeObject[];
  problems: FileProblem[];
}

/** Parses one manifest file's text into objects and problems (pure). */
export function parseManifests(file: string, text: string): { objects: KubeObject[]; problems: FileProblem[]; fatal: boolean } {
  const lc = new LineCounter();
  const docs = parseAllDocuments(text, { lineCounter: lc, prettyErrors: false });
  const objects: KubeObject[] = [];
  const problems: FileProblem[] = [];
  const lineOf = (offset: number | undefined): number => (offset === undefined ? 1 : lc.linePos(offset).line);
  if (!Array.isArray(docs)) {
    // EmptyStream: a file with no documents.
    return { objects, problems, fatal: false };
  }
  let fatal = false;
  for (const doc of docs) {
    const start = doc.range[0];
    if (doc.errors.length > 0) {
      fatal = true;
      for (const e of doc.errors) problems.push({ file, line: lineOf(e.pos[0]), message: `YAML: ${e.message.split('\n')[0] ?? e.message}` });
      continue;
    }
    const value: unknown = doc.toJS();
    if (value === null || value === undefined) continue; // empty document (`---` at the end)
    const where = (field: string): number => lineOf(keyOffset(doc.contents, field.split('.')) ?? doc.contents?.range[0] ?? start);
    const problem = checkObject(value);
    if (problem !== undefined) {
      problems.push({ file, line: where(problem.field), message: `${problem.field}: ${problem.message}` });
      continue;
    }
    if (value !== null && typeof value === 'object' && (value as { kind?: unknown }).kind === 'List') {
      for (const [i, item] of ((value as { items: unknown[] }).items).entries()) {
        const p = checkObject(item);
        if (p !== undefined) problems.push({ file, line: where(`items.${i}`), message: `items.${i}.${p.field}: ${p.message}` });
        else objects.push(item as KubeObject);
      }
      continue;
    }
    objects.push(value as KubeObject);
  }
  return { objects, problems, fatal };
}

/** Offset of the deepest key along `path` that exists (so a missing field points at its parent). */
function keyOffset(node: unknown, path: string[]): number | undefined {
  let cur = node;
  let found: number | undefined;
  for (const seg of path) {
    if (isMap(cur)) {
      const pair = cur.items.find((p) => isScalar(p.key) && String(p.key.value) === seg);
      if (pair === undefined) break;
      found = (pair.key as { range?: [number, number, number] }).range?.[0] ?? found;
      cur = pair.value;
    } else if (isSeq(cur)) {
      const item = cur.items[Number(seg)] as { range?: [number, number, number] } | undefined;
      if (item === undefined) break;
      found = item.range?.[0] ?? found;
      cur = item;
    } else break;
  }
  return found;
}

function checkObject(v: unknown): { field: string; message: string } | undefined {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return { field: '(document)', message: 'must be a mapping (a Kubernetes object)' };
  const o = v as Record<string, unknown>;
  if (o['kind'] === 'List') return Array.isArray(o['items']) ? undefined : { field: 'items', message: 'must be a list' };
  if (typeof o['apiVersion'] !== 'string' || o['apiVersion'] === '') return { field: 'apiVersion', message: 'missing or not a string' };
  if (typeof o['kind'] !== 'string' || o['kind'] === '') return { field: 'kind', message: 'missing or not a string' };
  const md = o['metadata'];
  if (md === null || typeof md !== 'object' || Array.isArray(md)) return { field: 'metadata', message: 'missing or not a mapping' };
  const m = md as Record<string, unknown>;
  if (typeof m['name'] !== 'string' || m['name'] === '') return { field: 'metadata.name', message: 'missing or not a string' };
  if (m['namespace'] !== undefined && typeof m['namespace'] !== 'string') return { field: 'metadata.namespace', message: 'must be a string' };
  if (m['labels'] !== undefined && (m['labels'] === null || typeof m['labels'] !== 'object' || Object.values(m['labels']).some((x) => typeof x !== 'string'))) {
    return { field: 'metadata.labels', message: 'must be a mapping of strings' };
  }
  return undefined;
}

function idOf(o: KubeObject): string {
  return `${o.kind}/${o.metadata.namespace ?? ''}/${o.metadata.name}`;
}

/** Watches a manifest directory and mirrors it into a ResourceSink. */
export class FileSource implements Source {
  readonly #o: FileSourceOptions;
  readonly #files = new Map<string, FileState>();
  #watcher: FSWatcher | undefined;
  #rescanTimer: NodeJS.Timeout | undefined;
  #settleTimer: NodeJS.Timeout | undefined;
  #scanning: Promise<void> | undefined;
  #again = false;
  #closed = false;

  constructor(o: FileSourceOptions) {
    this.#o = o;
  }

  /** Current problems over all files. */
  get problems(): FileProblem[] {
    return [...this.#files.values()].flatMap((f) => f.problems);
  }

  /** Scans once (fails loudly if the directory is unreadable), then watches. */
  async start(): Promise<void> {
    try {
      const s = await stat(this.#o.dir);
      if (!s.isDirectory()) throw new Error('not a directory');
    } catch (e) {
      throw new RondoError('RONDO_E_CONFIG', `state directory ${this.#o.dir} is not readable: ${errorMessage(e)} (check --files)`);
    }
    await this.rescan();
    this.#watch();
    const every = this.#o.rescanMs ?? 2000;
    if (every > 0) {
      this.#rescanTimer = setInterval(() => void this.rescan(), every);
      this.#rescanTimer.unref();
    }
  }

  /** Stops watching; idempotent. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#watcher?.close();
    this.#watcher = undefined;
    if (this.#rescanTimer !== undefined) clearInterval(this.#rescanTimer);
    if (this.#settleTimer !== undefined) clearTimeout(this.#settleTimer);
    await this.#scanning;
  }

  #watch(): void {
    if (this.#closed) return;
    try {
      this.#watcher = watch(this.#o.dir, { recursive: true }, () => this.#poke());
      this.#watcher.on('error', (e) => {
        this.#o.log.warn('file watcher failed; restarting it (periodic rescan continues)', { dir: this.#o.dir, err: e });
        this.#watcher?.close();
        this.#o.onWatchRestart?.();
        setTimeout(() => this.#watch(), 500).unref();
      });
    } catch (e) {
      this.#o.log.warn('cannot watch state directory; relying on periodic rescan', { dir: this.#o.dir, err: e instanceof Error ? e : errorMessage(e) });
    }
  }

  #poke(): void {
    if (this.#settleTimer !== undefined) return;
    this.#settleTimer = setTimeout(() => {
      this.#settleTimer = undefined;
      void this.rescan();
    }, this.#o.settleMs ?? 20);
  }

  /** Rescans the directory now; concurrent calls are merged. */
  rescan(): Promise<void> {
    if (this.#scanning !== undefined) {
      this.#again = true;
      return this.#scanning;
    }
    this.#scanning = (async () => {
      try {
        do {
          this.#again = false;
          await this.#scanOnce();
        } while (this.#again && !this.#closed);
      } catch (e) {
        this.#o.log.error('state directory scan failed', { dir: this.#o.dir, err: e instanceof Error ? e : errorMessage(e) });
      } finally {
        this.#scanning = undefined;
      }
    })();
    return this.#scanning;
  }

  async #scanOnce(): Promise<void> {
    const paths = await listManifests(this.#o.dir);
    const before = this.#currentObjects();
    let touched = false;
    for (const p of paths) {
      let s;
      try {
        s = await stat(p);
      } catch {
        continue; // deleted between readdir and stat
      }
      const old = this.#files.get(p);
      if (old !== undefined && old.mtimeMs === s.mtimeMs && old.size === s.size) continue;
      let text: string;
      try {
        text = await readFile(p, 'utf8');
      } catch (e) {
        this.#o.log.warn('cannot read manifest file', { file: p, err: e instanceof Error ? e : errorMessage(e) });
        continue;
      }
      const rel = relative(this.#o.dir, p);
      const parsed = parseManifests(rel, text);
      // A file that no longer parses keeps its previous objects (see the header).
      const objects = parsed.fatal && old !== undefined ? old.objects : parsed.objects;
      for (const pr of parsed.problems) this.#o.log.warn('invalid manifest', { file: pr.file, line: pr.line, problem: pr.message });
      this.#files.set(p, { mtimeMs: s.mtimeMs, size: s.size, objects, problems: parsed.problems });
      touched = true;
    }
    const present = new Set(paths);
    for (const p of [...this.#files.keys()]) {
      if (!present.has(p)) {
        this.#files.delete(p);
        touched = true;
      }
    }
    if (!touched) return;
    const after = this.#currentObjects();
    for (const [id, o] of after) if (before.get(id) !== o) this.#o.sink.upsert(o);
    for (const [id, o] of before) if (!after.has(id)) this.#o.sink.remove(o.kind, o.metadata.namespace, o.metadata.name);
    this.#o.onProblems?.(this.problems);
  }

  #currentObjects(): Map<string, KubeObject> {
    const m = new Map<string, KubeObject>();
    // Sorted by path so that an object defined twice resolves the same way every time.
    for (const p of [...this.#files.keys()].sort()) for (const o of this.#files.get(p)?.objects ?? []) m.set(idOf(o), o);
    return m;
  }
}

async function listManifests(dir: string): Promise<string[]> {
  const out: string[] = [];
  const entries = await readdir(dir, { withFileTypes: true, recursive: true });
  for (const e of entries) {
    if (!e.isFile()) continue;
    if (e.name.startsWith('.')) continue; // editors' and atomic-write temp files
    if (!/\.(ya?ml|json)$/.test(e.name)) continue;
    out.push(join(e.parentPath, e.name));
  }
  return out.sort();
}
