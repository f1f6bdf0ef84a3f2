/**
 * The controller's object store: every Kubernetes object the sources deliver, by kind and
 * `<namespace>/<name>`, with change notifications. Both sources write here through the
 * ResourceSink interface; the model reads a consistent view of it.
 *
 * An upsert of an object equal to the stored one keeps the stored reference and signals
 * nothing: re-reading an unchanged file (or an informer re-list) then costs no rebuild, and
 * the model's per-object caches (keyed by object identity) stay warm.
 */
import type { KubeObject, ResourceSink } from './sources/types.ts';

/** Key of an object inside its kind: `<namespace>/<name>` (namespace empty when cluster-scoped). */
export function objectKey(namespace: string | undefined, name: string): string {
  return `${namespace ?? ''}/${name}`;
}

/** Read side of the store, as the model sees it. */
export interface StoreReader {
  /** Objects of a kind, keyed by `<namespace>/<name>`. */
  list(kind: string): ReadonlyMap<string, KubeObject>;
  get(kind: string, namespace: string | undefined, name: string): KubeObject | undefined;
}

const EMPTY: ReadonlyMap<string, KubeObject> = new Map();

/** Objects by kind/ns/name; implements the sources' ResourceSink. */
export class ObjectStore implements ResourceSink, StoreReader {
  readonly #kinds = new Map<string, Map<string, KubeObject>>();
  readonly #listeners = new Set<(kind: string) => void>();
  #revision = 0;

  /** Increments on every effective change. */
  get revision(): number {
    return this.#revision;
  }

  /** Calls `fn(kind)` after every effective change; returns an unsubscribe function. */
  onChange(fn: (kind: string) => void): () => void {
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  }

  /** Objects of a kind, keyed by `<namespace>/<name>`. */
  list(kind: string): ReadonlyMap<string, KubeObject> {
    return this.#kinds.get(kind) ?? EMPTY;
  }

  /** One object, or undefined. */
  get(kind: string, namespace: string | undefined, name: string): KubeObject | undefined {
    return this.#kinds.get(kind)?.get(objectKey(namespace, name));
  }

  /** Adds or replaces one object. */
  upsert(obj: KubeObject): void {
    let m = this.#kinds.get(obj.kind);
    if (m === undefined) {
      m = new Map();
      this.#kinds.set(obj.kind, m);
    }
    const key = objectKey(obj.metadata.namespace, obj.metadata.name);
    const old = m.get(key);
    if (old !== undefined && sameObject(old, obj)) return;
    m.set(key, obj);
    this.#changed(obj.kind);
  }

  /** Removes one object; unknown objects are ignored. */
  remove(kind: string, namespace: string | undefined, name: string): void {
    if (this.#kinds.get(kind)?.delete(objectKey(namespace, name)) === true) this.#changed(kind);
  }

  /** Replaces every object of a kind (after a list); equal objects keep their references. */
  replaceAll(kind: string, objects: KubeObject[]): void {
    const old = this.#kinds.get(kind) ?? new Map<string, KubeObject>();
    const next = new Map<string, KubeObject>();
    let changed = false;
    for (const o of objects) {
      const key = objectKey(o.metadata.namespace, o.metadata.name);
      const prev = old.get(key);
      if (prev !== undefined && sameObject(prev, o)) next.set(key, prev);
      else {
        next.set(key, o);
        changed = true;
      }
    }
    if (next.size !== old.size) changed = true;
    else for (const k of old.keys()) if (!next.has(k)) changed = true;
    this.#kinds.set(kind, next);
    if (changed) this.#changed(kind);
  }

  #changed(kind: string): void {
    this.#revision++;
    for (const fn of this.#listeners) fn(kind);
  }
}

function sameObject(a: KubeObject, b: KubeObject): boolean {
  if (a === b) return true;
  const ra = a.metadata.resourceVersion;
  // Informer objects carry resourceVersion; file objects usually do not, so compare content.
  if (ra !== undefined && ra === b.metadata.resourceVersion) return true;
  return JSON.stringify(a) === JSON.stringify(b);
}
