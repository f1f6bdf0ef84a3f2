/**
 * Writes what a Kubernetes API server would show (Namespaces, Nodes, Pods, Services,
 * EndpointSlices, user resources) as one YAML file per object into the state directory, the
 * input of the controller's file source. Writes are atomic (tmp + rename).
 */
import { mkdirSync, readdirSync, rmSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import type { KubeObject } from '../common/kube-object.ts';
import type { LabPlan, PodPlan, ServicePlan } from './plan.ts';
import { keyOf } from './plan.ts';
import { writeAtomic } from './record.ts';

/** File name of an object: `<kind>.<namespace>.<name>.yaml`, cluster-scoped `<kind>.<name>.yaml`. */
export function stateFileName(kind: string, namespace: string | undefined, name: string): string {
  return `${[kind.toLowerCase(), namespace, name].filter((x) => x !== undefined && x !== '').join('.')}.yaml`;
}

/** Pod phase as the lab knows it. */
export type PodPhase = 'Pending' | 'Running' | 'Failed' | 'Succeeded';

/** A Pod object. */
export function podObject(p: PodPlan, uid: string, phase: PodPhase): KubeObject {
  return {
    apiVersion: 'v1', kind: 'Pod',
    metadata: { name: p.name, namespace: p.namespace, uid, labels: p.labels },
    spec: { nodeName: p.node, serviceAccountName: p.serviceAccount, containers: [{ name: p.deployment, command: p.command }] },
    status: { phase, podIP: p.ip, podIPs: [{ ip: p.ip }], conditions: [{ type: 'Ready', status: phase === 'Running' ? 'True' : 'False' }] },
  };
}

/** A Service object. */
export function serviceObject(s: ServicePlan): KubeObject {
  return {
    apiVersion: 'v1', kind: 'Service',
    metadata: { name: s.name, namespace: s.namespace, labels: s.labels },
    spec: {
      type: 'ClusterIP', clusterIP: s.clusterIP, clusterIPs: [s.clusterIP], selector: s.selector,
      ports: s.ports.map((p) => ({ ...(p.name !== undefined ? { name: p.name } : {}), port: p.port, targetPort: p.targetPort, protocol: p.protocol })),
    },
  };
}

/** The EndpointSlice of a Service (one per service in the lab). */
export function endpointSliceObject(s: ServicePlan, pods: ReadonlyMap<string, { plan: PodPlan; uid: string; ready: boolean }>): KubeObject {
  return {
    apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', addressType: 'IPv4',
    metadata: { name: `${s.name}-lab`, namespace: s.namespace, labels: { 'kubernetes.io/service-name': s.name } },
    endpoints: s.endpoints.flatMap((k) => {
      const p = pods.get(k);
      if (p === undefined) return [];
      return [{ addresses: [p.plan.ip], conditions: { ready: p.ready }, nodeName: p.plan.node, targetRef: { kind: 'Pod', name: p.plan.name, namespace: p.plan.namespace, uid: p.uid } }];
    }),
    ports: s.ports.map((p) => ({ ...(p.name !== undefined ? { name: p.name } : {}), port: p.targetPort, protocol: p.protocol })),
  };
}

/** Writes objects into one state directory. */
export class StateWriter {
  readonly dir: string;
  constructor(dir: string) {
    this.dir = dir;
    mkdirSync(dir, { recursive: true });
  }

  /** Adds or replaces one object. */
  put(obj: KubeObject): string {
    const file = join(this.dir, stateFileName(obj.kind, obj.metadata.namespace, obj.metadata.name));
    writeAtomic(file, stringify(obj));
    return file;
  }

  /** Removes one object; false when it was not there. */
  remove(kind: string, namespace: string | undefined, name: string): boolean {
    const file = join(this.dir, stateFileName(kind, namespace, name));
    if (!existsSync(file)) return false;
    rmSync(file);
    return true;
  }

  /** Names of the files present (for status and tests). */
  list(): string[] {
    return readdirSync(this.dir).filter((f) => f.endsWith('.yaml')).sort();
  }

  /** Writes the whole initial picture of a lab. */
  writeAll(plan: LabPlan, uids: ReadonlyMap<string, string>, ready: (podKey: string) => boolean): void {
    for (const n of plan.namespaces) this.put({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: n.name, labels: { 'kubernetes.io/metadata.name': n.name, ...n.labels } } });
    for (const n of plan.nodes) {
      this.put({
        apiVersion: 'v1', kind: 'Node', metadata: { name: n.name, labels: { 'kubernetes.io/hostname': n.name } },
        spec: { podCIDR: n.podCIDR, podCIDRs: [n.podCIDR] },
        status: { addresses: [{ type: 'InternalIP', address: n.ip }, { type: 'Hostname', address: n.name }], conditions: [{ type: 'Ready', status: 'True' }] },
      });
    }
    this.writePods(plan, uids, ready);
    for (const s of plan.services) this.put(serviceObject(s));
    for (const o of plan.extra) this.put(o);
  }

  /** Rewrites Pods and EndpointSlices for the current liveness. */
  writePods(plan: LabPlan, uids: ReadonlyMap<string, string>, ready: (podKey: string) => boolean): void {
    const pods = new Map(plan.pods.map((p) => [keyOf(p), { plan: p, uid: uids.get(keyOf(p)) ?? '', ready: ready(keyOf(p)) }]));
    for (const p of pods.values()) this.put(podObject(p.plan, p.uid, p.ready ? 'Running' : 'Failed'));
    for (const s of plan.services) this.put(endpointSliceObject(s, pods));
  }
}
