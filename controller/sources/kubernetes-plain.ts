/**
 * Turns what the client library hands out into the JSON the API server sent: typed lists
 * come back as model class instances with Date fields and renamed properties (`_continue`,
 * `_ref`…), watch events as raw JSON. The store must not care which path an object took.
 */
import { InvalidInputError } from '../../common/errors.ts';
import type { KubeObject } from './types.ts';

interface AttributeInfo { name: string; baseName: string }
interface ModelClass { getAttributeTypeMap?: () => AttributeInfo[] }

/** Kubernetes writes metav1.Time as RFC 3339 without fractional seconds when they are zero. */
function formatTime(d: Date): string {
  return d.toISOString().replace(/\.000Z$/, 'Z');
}

/** Recursively converts a library value (model instance, Date, array, record) to plain JSON. */
export function toPlainJson(value: unknown): unknown {
  if (value === null || typeof value !== 'object') return value;
  if (value instanceof Date) return formatTime(value);
  if (Array.isArray(value)) return value.map(toPlainJson);
  const ctor = (value as { constructor?: ModelClass }).constructor;
  const out: Record<string, unknown> = {};
  const rec = value as Record<string, unknown>;
  if (ctor !== undefined && typeof ctor.getAttributeTypeMap === 'function') {
    // A generated model: its attribute map holds the wire name of each property.
    for (const a of ctor.getAttributeTypeMap()) {
      const v = rec[a.name];
      if (v !== undefined) out[a.baseName] = toPlainJson(v);
    }
    return out;
  }
  for (const [k, v] of Object.entries(rec)) if (v !== undefined) out[k] = toPlainJson(v);
  return out;
}

/**
 * A plain KubeObject with `apiVersion` and `kind` set (list items omit them); throws
 * InvalidInputError for anything without `metadata.name`, so one bad object is skipped alone.
 */
export function toKubeObject(value: unknown, apiVersion: string, kind: string): KubeObject {
  const plain = toPlainJson(value);
  if (plain === null || typeof plain !== 'object' || Array.isArray(plain)) {
    throw new InvalidInputError(`${kind}: expected an object from the API server, got ${typeof plain}`);
  }
  const obj = plain as Record<string, unknown>;
  const meta = obj['metadata'] as Record<string, unknown> | undefined;
  if (meta === undefined || typeof meta !== 'object' || typeof meta['name'] !== 'string' || meta['name'] === '') {
    throw new InvalidInputError(`${kind}: object without metadata.name from the API server; is the list path serving ${apiVersion}?`);
  }
  return { ...obj, apiVersion, kind } as KubeObject;
}
