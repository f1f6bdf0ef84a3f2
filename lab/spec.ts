/**
 * Parses and validates a lab spec: multi-document Kubernetes YAML (Namespaces, Deployments,
 * Services, mesh resources) plus one `kind: Lab` document. Every error names the file, the
 * line and the field ("spec.yaml:12: Deployment demo/web: spec.template.spec.containers[0].command: required").
 */
import { LineCounter, parseAllDocuments } from 'yaml';
import type { Document } from 'yaml';
import { InvalidInputError } from '../common/errors.ts';
import type { KubeObject } from '../common/kube-object.ts';

/** Kinds the lab passes through to the state directory unchanged (the mesh's user resources). */
export const USER_KINDS = ['Gateway', 'HTTPRoute', 'GRPCRoute', 'AuthorizationPolicy', 'PeerAuthentication', 'TrafficPolicy'] as const;
/** Kinds the lab itself generates; a spec must not contain them. */
export const GENERATED_KINDS = ['Pod', 'Node', 'EndpointSlice'] as const;

/** The `kind: Lab` section with defaults applied. */
export interface LabSettings {
  name: string; nodes: number; podCIDR: string; serviceCIDR: string; underlayCIDR: string; mesh: boolean;
  /** `spec.meshOptions`: extra settings passed to the mesh processes (e.g. short certificates for renewal tests). */
  meshOptions: MeshOptions;
}
/** `spec.meshOptions` of the Lab document. */
export interface MeshOptions { certTtlSeconds?: number }
/** A Namespace of the spec. */
export interface NamespaceSpec { name: string; labels: Record<string, string> }
/** A Deployment reduced to what the lab runs: one process per replica. */
export interface DeploymentSpec {
  namespace: string; name: string; replicas: number; podLabels: Record<string, string>;
  serviceAccount: string; nodeName?: string; command: string[]; env: Record<string, string>;
}
/** One Service port; targetPort is numeric in the lab. */
export interface ServicePortSpec { name?: string; port: number; targetPort: number; protocol: string }
/** A ClusterIP Service. */
export interface ServiceSpec {
  namespace: string; name: string; labels: Record<string, string>; selector: Record<string, string>;
  ports: ServicePortSpec[]; clusterIP?: string;
}
/** A whole validated spec. */
export interface LabSpec {
  lab: LabSettings; namespaces: NamespaceSpec[]; deployments: DeploymentSpec[]; services: ServiceSpec[];
  /** Mesh resources (policies, routes, gateways) written to the state directory as they are. */
  extra: KubeObject[];
}

/** Defaults of the Lab section. */
export const LAB_DEFAULTS = { name: 'rondo', nodes: 2, podCIDR: '10.244.0.0/16', serviceCIDR: '10.96.0.0/16', underlayCIDR: '10.250.0.0/24', mesh: false } as const;

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const LAB_NAME = /^[a-z][a-z0-9]{0,7}$/;

/** One parsed document with what is needed to point at its lines. */
export interface SourceDoc { obj: Record<string, unknown>; doc: Document; file: string; lines: LineCounter; kind: string; where: string }

/** Splits YAML text into documents; syntax errors name file and line. */
export function readDocuments(text: string, file: string): SourceDoc[] {
  const lines = new LineCounter();
  const docs = parseAllDocuments(text, { lineCounter: lines, prettyErrors: false });
  if (!Array.isArray(docs)) throw new InvalidInputError(`${file}: not a YAML stream`);
  const out: SourceDoc[] = [];
  for (const doc of docs) {
    const err = doc.errors[0];
    if (err !== undefined) {
      const line = lines.linePos(err.pos[0]).line;
      throw new InvalidInputError(`${file}:${line}: YAML syntax error: ${err.message.split('\n')[0] ?? ''}`);
    }
    const value: unknown = doc.toJS();
    if (value === null || value === undefined) continue; // empty document (e.g. trailing ---)
    const at = lines.linePos(doc.contents?.range?.[0] ?? 0).line;
    if (typeof value !== 'object' || Array.isArray(value)) throw new InvalidInputError(`${file}:${at}: a document must be a mapping with apiVersion, kind and metadata`);
    const obj = value as Record<string, unknown>;
    const kind = typeof obj['kind'] === 'string' ? obj['kind'] : '';
    const meta = (obj['metadata'] ?? {}) as Record<string, unknown>;
    const ns = typeof meta['namespace'] === 'string' ? `${meta['namespace']}/` : '';
    const nm = typeof meta['name'] === 'string' ? meta['name'] : '?';
    out.push({ obj, doc, file, lines, kind, where: `${kind || 'document'} ${ns}${nm}` });
  }
  return out;
}

/** Line of the deepest node that exists along `path` (so a missing field points at its parent). */
function lineOf(d: SourceDoc, path: (string | number)[]): number {
  for (let n = path.length; n >= 0; n--) {
    const node = d.doc.getIn(path.slice(0, n), true) as { range?: [number, number, number] } | undefined;
    if (node !== undefined && node !== null && typeof node === 'object' && node.range !== undefined) {
      return d.lines.linePos(node.range[0]).line;
    }
    if (n === 0) {
      const c = d.doc.contents as { range?: [number, number, number] } | null;
      return d.lines.linePos(c?.range?.[0] ?? 0).line;
    }
  }
  return 1;
}

function pathText(path: (string | number)[]): string {
  return path.map((p, i) => (typeof p === 'number' ? `[${p}]` : i === 0 ? p : `.${p}`)).join('');
}

/** Builds the promised error: "file:line: Kind ns/name: field.path: problem". */
export function fieldError(d: SourceDoc, path: (string | number)[], problem: string): InvalidInputError {
  return new InvalidInputError(`${d.file}:${lineOf(d, path)}: ${d.where}: ${pathText(path)}: ${problem}`);
}

function get(obj: unknown, path: (string | number)[]): unknown {
  let cur: unknown = obj;
  for (const p of path) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<string | number, unknown>)[p];
  }
  return cur;
}

/** Typed field readers bound to one document, each throwing a located error. */
class Fields {
  readonly d: SourceDoc;
  constructor(d: SourceDoc) { this.d = d; }
  str(path: (string | number)[], opts: { optional: true; pattern?: RegExp; hint?: string }): string | undefined;
  str(path: (string | number)[], opts?: { optional?: false; pattern?: RegExp; hint?: string }): string;
  str(path: (string | number)[], opts: { optional?: boolean; pattern?: RegExp; hint?: string } = {}): string | undefined {
    const v = get(this.d.obj, path);
    if (v === undefined || v === null) {
      if (opts.optional === true) return undefined;
      throw fieldError(this.d, path, 'required');
    }
    if (typeof v !== 'string') throw fieldError(this.d, path, `must be a string, got ${JSON.stringify(v)}`);
    if (opts.pattern !== undefined && !opts.pattern.test(v)) throw fieldError(this.d, path, `"${v}" is not valid${opts.hint !== undefined ? ` (${opts.hint})` : ''}`);
    return v;
  }
  int(path: (string | number)[], dflt: number | undefined, min: number, max: number): number {
    const v = get(this.d.obj, path);
    if (v === undefined || v === null) {
      if (dflt !== undefined) return dflt;
      throw fieldError(this.d, path, 'required');
    }
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) throw fieldError(this.d, path, `must be an integer from ${min} to ${max}, got ${JSON.stringify(v)}`);
    return v;
  }
  bool(path: (string | number)[], dflt: boolean): boolean {
    const v = get(this.d.obj, path);
    if (v === undefined || v === null) return dflt;
    if (typeof v !== 'boolean') throw fieldError(this.d, path, `must be true or false, got ${JSON.stringify(v)}`);
    return v;
  }
  labels(path: (string | number)[]): Record<string, string> {
    const v = get(this.d.obj, path);
    if (v === undefined || v === null) return {};
    if (typeof v !== 'object' || Array.isArray(v)) throw fieldError(this.d, path, 'must be a map of string to string');
    const out: Record<string, string> = {};
    for (const [k, val] of Object.entries(v as Record<string, unknown>)) {
      if (typeof val !== 'string') throw fieldError(this.d, [...path, k], `must be a string (quote it), got ${JSON.stringify(val)}`);
      out[k] = val;
    }
    return out;
  }
  strList(path: (string | number)[], required: boolean): string[] {
    const v = get(this.d.obj, path);
    if (v === undefined || v === null) {
      if (required) throw fieldError(this.d, path, 'required');
      return [];
    }
    if (!Array.isArray(v)) throw fieldError(this.d, path, 'must be a list of strings');
    return v.map((x, i) => {
      if (typeof x !== 'string' && typeof x !== 'number') throw fieldError(this.d, [...path, i], 'must be a string');
      return String(x);
    });
  }
  seq(path: (string | number)[], required: boolean): unknown[] {
    const v = get(this.d.obj, path);
    if (v === undefined || v === null) {
      if (required) throw fieldError(this.d, path, 'required');
      return [];
    }
    if (!Array.isArray(v)) throw fieldError(this.d, path, 'must be a list');
    return v;
  }
}

function parseLab(d: SourceDoc): LabSettings {
  const f = new Fields(d);
  const api = f.str(['apiVersion']);
  if (api !== 'lab.rondo.dev/v1') throw fieldError(d, ['apiVersion'], `must be lab.rondo.dev/v1, got "${api}"`);
  return {
    name: f.str(['metadata', 'name'], { optional: true, pattern: LAB_NAME, hint: 'a lowercase letter then up to 7 lowercase letters or digits, so that network namespace and link names fit 15 characters' }) ?? LAB_DEFAULTS.name,
    nodes: f.int(['spec', 'nodes'], LAB_DEFAULTS.nodes, 1, 50),
    podCIDR: f.str(['spec', 'podCIDR'], { optional: true }) ?? LAB_DEFAULTS.podCIDR,
    serviceCIDR: f.str(['spec', 'serviceCIDR'], { optional: true }) ?? LAB_DEFAULTS.serviceCIDR,
    underlayCIDR: f.str(['spec', 'underlayCIDR'], { optional: true }) ?? LAB_DEFAULTS.underlayCIDR,
    mesh: f.bool(['spec', 'mesh'], LAB_DEFAULTS.mesh),
    meshOptions: parseMeshOptions(d, f),
  };
}

// Short TTLs exist for renewal tests; below 10 s the half-life renewal has no room for a retry.
function parseMeshOptions(d: SourceDoc, f: Fields): MeshOptions {
  const o = get(d.obj, ['spec', 'meshOptions']);
  if (o === undefined || o === null) return {};
  if (typeof o !== 'object' || Array.isArray(o)) throw fieldError(d, ['spec', 'meshOptions'], 'must be a mapping');
  const unknown = Object.keys(o).find((k) => k !== 'certTtlSeconds');
  if (unknown !== undefined) throw fieldError(d, ['spec', 'meshOptions', unknown], 'unknown field (known: certTtlSeconds)');
  const ttl = get(o, ['certTtlSeconds']);
  return ttl === undefined ? {} : { certTtlSeconds: f.int(['spec', 'meshOptions', 'certTtlSeconds'], undefined, 10, 365 * 24 * 3600) };
}

function parseNamespace(d: SourceDoc): NamespaceSpec {
  const f = new Fields(d);
  return { name: f.str(['metadata', 'name'], { pattern: DNS_LABEL, hint: 'a DNS label' }), labels: f.labels(['metadata', 'labels']) };
}

function parseDeployment(d: SourceDoc): DeploymentSpec {
  const f = new Fields(d);
  const name = f.str(['metadata', 'name'], { pattern: DNS_LABEL, hint: 'a DNS label' });
  const namespace = f.str(['metadata', 'namespace'], { optional: true, pattern: DNS_LABEL }) ?? 'default';
  const podLabels = f.labels(['spec', 'template', 'metadata', 'labels']);
  const match = f.labels(['spec', 'selector', 'matchLabels']);
  for (const [k, v] of Object.entries(match)) {
    if (podLabels[k] !== v) throw fieldError(d, ['spec', 'selector', 'matchLabels', k], `selector ${k}=${v} does not match the pod template labels`);
  }
  const pod = ['spec', 'template', 'spec'];
  const containers = f.seq([...pod, 'containers'], true);
  if (containers.length === 0) throw fieldError(d, [...pod, 'containers'], 'needs at least one container');
  if (containers.length > 1) throw fieldError(d, [...pod, 'containers', 1], 'the lab runs one process per pod: use one container');
  const c = [...pod, 'containers', 0];
  const command = [...f.strList([...c, 'command'], true), ...f.strList([...c, 'args'], false)];
  if (command.length === 0) throw fieldError(d, [...c, 'command'], 'must not be empty (the image is ignored; the command is what runs)');
  const env: Record<string, string> = {};
  f.seq([...c, 'env'], false).forEach((_, i) => {
    const k = f.str([...c, 'env', i, 'name'], { pattern: /^[A-Za-z_][A-Za-z0-9_]*$/, hint: 'an environment variable name' });
    env[k] = f.str([...c, 'env', i, 'value'], { optional: true }) ?? '';
  });
  const nodeName = f.str([...pod, 'nodeName'], { optional: true });
  return {
    namespace, name, podLabels, env, command,
    replicas: f.int(['spec', 'replicas'], 1, 0, 250),
    serviceAccount: f.str([...pod, 'serviceAccountName'], { optional: true, pattern: DNS_LABEL }) ?? 'default',
    ...(nodeName !== undefined ? { nodeName } : {}),
  };
}

function parseService(d: SourceDoc): ServiceSpec {
  const f = new Fields(d);
  const type = f.str(['spec', 'type'], { optional: true }) ?? 'ClusterIP';
  if (type !== 'ClusterIP') throw fieldError(d, ['spec', 'type'], `only ClusterIP is supported in the lab, got "${type}"`);
  const ports = f.seq(['spec', 'ports'], true).map((_, i): ServicePortSpec => {
    const p = ['spec', 'ports', i];
    const port = f.int([...p, 'port'], undefined, 1, 65535);
    const tp = get(d.obj, [...p, 'targetPort']);
    if (typeof tp === 'string') throw fieldError(d, [...p, 'targetPort'], `named target ports ("${tp}") are not supported in the lab; use a number`);
    const protocol = f.str([...p, 'protocol'], { optional: true }) ?? 'TCP';
    if (protocol !== 'TCP') throw fieldError(d, [...p, 'protocol'], `only TCP is supported, got "${protocol}"`);
    const name = f.str([...p, 'name'], { optional: true, pattern: DNS_LABEL });
    return { port, targetPort: f.int([...p, 'targetPort'], port, 1, 65535), protocol, ...(name !== undefined ? { name } : {}) };
  });
  if (ports.length === 0) throw fieldError(d, ['spec', 'ports'], 'needs at least one port');
  const clusterIP = f.str(['spec', 'clusterIP'], { optional: true });
  return {
    name: f.str(['metadata', 'name'], { pattern: DNS_LABEL, hint: 'a DNS label' }),
    namespace: f.str(['metadata', 'namespace'], { optional: true, pattern: DNS_LABEL }) ?? 'default',
    labels: f.labels(['metadata', 'labels']),
    selector: f.labels(['spec', 'selector']),
    ports,
    ...(clusterIP !== undefined && clusterIP !== 'None' ? { clusterIP } : {}),
  };
}

/** Checks the common shape of a pass-through resource and returns it as a KubeObject. */
export function parseUserResource(d: SourceDoc): KubeObject {
  const f = new Fields(d);
  f.str(['apiVersion']);
  const name = f.str(['metadata', 'name']);
  const meta: Record<string, unknown> = { ...(d.obj['metadata'] as Record<string, unknown>), name };
  if (d.kind !== 'Namespace' && meta['namespace'] === undefined) meta['namespace'] = 'default';
  return { ...d.obj, metadata: meta } as unknown as KubeObject;
}

function unknownKind(d: SourceDoc): InvalidInputError {
  if (d.kind === '') return fieldError(d, ['kind'], 'required');
  if ((GENERATED_KINDS as readonly string[]).includes(d.kind)) return fieldError(d, ['kind'], `${d.kind} objects are generated by the lab; write a Deployment instead`);
  return fieldError(d, ['kind'], `unknown kind "${d.kind}"; the lab understands Lab, Namespace, Deployment, Service, ${USER_KINDS.join(', ')}`);
}

/** Parses a whole lab spec (YAML text) into a validated LabSpec. */
export function parseLabSpec(text: string, file: string): LabSpec {
  const docs = readDocuments(text, file);
  let lab: LabSettings | undefined;
  const out: LabSpec = { lab: { ...LAB_DEFAULTS, meshOptions: {} }, namespaces: [], deployments: [], services: [], extra: [] };
  const seen = new Map<string, SourceDoc>();
  for (const d of docs) {
    const f = new Fields(d);
    f.str(['kind']);
    let key: string;
    switch (d.kind) {
      case 'Lab':
        if (lab !== undefined) throw fieldError(d, ['kind'], 'only one Lab document is allowed');
        lab = parseLab(d);
        key = 'Lab';
        break;
      case 'Namespace': { const n = parseNamespace(d); out.namespaces.push(n); key = `Namespace/${n.name}`; break; }
      case 'Deployment': { const x = parseDeployment(d); out.deployments.push(x); key = `Deployment/${x.namespace}/${x.name}`; break; }
      case 'Service': { const s = parseService(d); out.services.push(s); key = `Service/${s.namespace}/${s.name}`; break; }
      default: {
        if (!(USER_KINDS as readonly string[]).includes(d.kind)) throw unknownKind(d);
        const o = parseUserResource(d);
        out.extra.push(o);
        key = `${d.kind}/${o.metadata.namespace ?? ''}/${o.metadata.name}`;
      }
    }
    const prev = seen.get(key);
    if (prev !== undefined) throw fieldError(d, ['metadata', 'name'], `duplicate ${key} (first defined at ${prev.file}:${lineOf(prev, [])})`);
    seen.set(key, d);
  }
  if (lab !== undefined) out.lab = lab;
  const declared = new Set(out.namespaces.map((n) => n.name));
  if (!declared.has('default')) out.namespaces.push({ name: 'default', labels: {} });
  for (const [key, d] of seen) {
    if (key === 'Lab' || key.startsWith('Namespace/')) continue;
    const ns = (get(d.obj, ['metadata', 'namespace']) as string | undefined) ?? 'default';
    if (!declared.has(ns) && ns !== 'default') throw fieldError(d, ['metadata', 'namespace'], `namespace "${ns}" is not declared; add a Namespace document for it`);
  }
  return out;
}
