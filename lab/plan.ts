/**
 * Pure: turns a validated lab spec into a topology plan — every namespace name, link name,
 * address and pod placement — so the whole layout is decided (and tested) before any I/O.
 */
import { InvalidInputError } from '../common/errors.ts';
import type { LabSpec, MeshOptions, NamespaceSpec, ServicePortSpec } from './spec.ts';
import { cidrContains, cidrSize, cidrsOverlap, intToIp, ipToInt, parseCidr } from './ipam.ts';
import type { Cidr } from './ipam.ts';
import type { KubeObject } from '../common/kube-object.ts';

/** One node: a netns on the underlay bridge with its own pod CIDR. */
export interface NodePlan { name: string; index: number; netns: string; ip: string; podCIDR: string; gateway: string; bridgePort: string }
/** One pod: a netns with a veth to its node. */
export interface PodPlan {
  namespace: string; name: string; deployment: string; labels: Record<string, string>; serviceAccount: string;
  node: string; netns: string; ip: string; hostVeth: string; command: string[]; env: Record<string, string>;
}
/** One ClusterIP service and the pods it selects. */
export interface ServicePlan {
  namespace: string; name: string; labels: Record<string, string>; selector: Record<string, string>;
  clusterIP: string; ports: ServicePortSpec[]; endpoints: string[] /* pod keys ns/name */;
}
/** The whole topology. */
export interface LabPlan {
  name: string; mesh: boolean; podCIDR: string; serviceCIDR: string; underlayCIDR: string;
  /** Extra settings of the mesh processes (`spec.meshOptions`); absent in plans saved by older labs. */
  meshOptions?: MeshOptions;
  bridge: { netns: string; device: string };
  controller: { netns: string; ip: string; bridgePort: string };
  nodes: NodePlan[]; pods: PodPlan[]; services: ServicePlan[]; namespaces: NamespaceSpec[]; extra: KubeObject[];
}

/** Key of a pod or service: `<namespace>/<name>`. */
export function keyOf(o: { namespace: string; name: string }): string {
  return `${o.namespace}/${o.name}`;
}

/** True when every selector label is on the pod (an empty selector selects nothing, as for Services). */
export function selects(selector: Record<string, string>, labels: Record<string, string>): boolean {
  const entries = Object.entries(selector);
  return entries.length > 0 && entries.every(([k, v]) => labels[k] === v);
}

/**
 * Plans the lab. `hostAddresses` are the root namespace's own addresses: a lab range that
 * contains one would make `ip` output and logs ambiguous, so it is refused.
 */
export function planLab(spec: LabSpec, hostAddresses: readonly string[] = []): LabPlan {
  const L = spec.lab.name;
  const pod = parseCidr(spec.lab.podCIDR, 'Lab spec.podCIDR');
  const svc = parseCidr(spec.lab.serviceCIDR, 'Lab spec.serviceCIDR');
  const under = parseCidr(spec.lab.underlayCIDR, 'Lab spec.underlayCIDR');
  const ranges: [string, Cidr][] = [['podCIDR', pod], ['serviceCIDR', svc], ['underlayCIDR', under]];
  for (let i = 0; i < ranges.length; i++) {
    for (let j = i + 1; j < ranges.length; j++) {
      const [an, a] = ranges[i]!;
      const [bn, b] = ranges[j]!;
      if (cidrsOverlap(a, b)) throw new InvalidInputError(`Lab spec.${an} ${a.text} overlaps spec.${bn} ${b.text}: choose ranges that do not clash`);
    }
  }
  for (const h of hostAddresses) {
    for (const [n, c] of ranges) {
      if (cidrContains(c, h)) throw new InvalidInputError(`Lab spec.${n} ${c.text} clashes with this machine's address ${h}: choose another range in the Lab document`);
    }
  }
  const nodesCount = spec.lab.nodes;
  if (pod.prefix > 24 || cidrSize(pod) / 256 < nodesCount + 1) {
    throw new InvalidInputError(`Lab spec.podCIDR ${pod.text} is too small for ${nodesCount} nodes: each node takes a /24 (use a /16)`);
  }
  if (cidrSize(under) < 16 + nodesCount) throw new InvalidInputError(`Lab spec.underlayCIDR ${under.text} is too small for ${nodesCount} nodes`);
  const nodes: NodePlan[] = [];
  for (let i = 1; i <= nodesCount; i++) {
    const base = pod.base + i * 256; // node N gets 10.244.N.0/24, as the contract says
    nodes.push({
      name: `node-${i}`, index: i, netns: `${L}-n${i}`, ip: intToIp(under.base + 10 + i),
      podCIDR: `${intToIp(base)}/24`, gateway: intToIp(base + 1), bridgePort: `n${i}`,
    });
  }
  const nodeByName = new Map(nodes.map((n) => [n.name, n]));
  const nextHost = new Map(nodes.map((n) => [n.name, 2]));
  const pods: PodPlan[] = [];
  let rr = 0;
  for (const d of spec.deployments) {
    for (let r = 0; r < d.replicas; r++) {
      let node = nodes[rr % nodes.length]!;
      if (d.nodeName !== undefined) {
        const n = nodeByName.get(d.nodeName);
        if (n === undefined) throw new InvalidInputError(`Deployment ${d.namespace}/${d.name}: spec.template.spec.nodeName "${d.nodeName}" is not a lab node (${nodes.map((x) => x.name).join(', ')})`);
        node = n;
      } else rr++;
      const host = nextHost.get(node.name)!;
      if (host > 254) throw new InvalidInputError(`node ${node.name} has more than 253 pods: add nodes in the Lab document`);
      nextHost.set(node.name, host + 1);
      const idx = pods.length + 1;
      pods.push({
        namespace: d.namespace, name: `${d.name}-${r}`, deployment: d.name, labels: d.podLabels,
        serviceAccount: d.serviceAccount, node: node.name, netns: `${L}-p${idx}`,
        ip: intToIp(ipToInt(node.gateway)! - 1 + host), hostVeth: `vp${idx}`, command: d.command, env: d.env,
      });
    }
  }
  const taken = new Set<string>();
  for (const s of spec.services) {
    if (s.clusterIP === undefined) continue;
    if (!cidrContains(svc, s.clusterIP)) throw new InvalidInputError(`Service ${s.namespace}/${s.name}: spec.clusterIP ${s.clusterIP} is outside the lab's serviceCIDR ${svc.text}`);
    if (taken.has(s.clusterIP)) throw new InvalidInputError(`Service ${s.namespace}/${s.name}: spec.clusterIP ${s.clusterIP} is already used by another Service`);
    taken.add(s.clusterIP);
  }
  let nextVip = svc.base + 10;
  const services = spec.services.map((s): ServicePlan => {
    let clusterIP = s.clusterIP;
    if (clusterIP === undefined) {
      while (taken.has(intToIp(nextVip))) nextVip++;
      if (nextVip >= svc.base + cidrSize(svc) - 1) throw new InvalidInputError(`Lab spec.serviceCIDR ${svc.text} has no free address left`);
      clusterIP = intToIp(nextVip++);
      taken.add(clusterIP);
    }
    const endpoints = pods.filter((p) => p.namespace === s.namespace && selects(s.selector, p.labels)).map(keyOf);
    return { namespace: s.namespace, name: s.name, labels: s.labels, selector: s.selector, clusterIP, ports: s.ports, endpoints };
  });
  return {
    name: L, mesh: spec.lab.mesh, meshOptions: spec.lab.meshOptions, podCIDR: pod.text, serviceCIDR: svc.text, underlayCIDR: under.text,
    bridge: { netns: `${L}-br`, device: 'br0' },
    controller: { netns: `${L}-ctl`, ip: intToIp(under.base + 2), bridgePort: 'ctl' },
    nodes, pods, services, namespaces: spec.namespaces, extra: spec.extra,
  };
}

/** Renders `iptables-restore --noflush` input for the LAB-SERVICES chain from the ready endpoints. */
export function servicesRules(plan: LabPlan, ready: (podKey: string) => boolean, withJumps: boolean): string {
  const byKey = new Map(plan.pods.map((p) => [keyOf(p), p]));
  const lines = ['*nat', ':LAB-SERVICES - [0:0]'];
  if (withJumps) lines.push('-A PREROUTING -j LAB-SERVICES', '-A OUTPUT -j LAB-SERVICES');
  for (const s of plan.services) {
    const eps = s.endpoints.filter(ready).map((k) => byKey.get(k)).filter((p) => p !== undefined);
    for (const port of s.ports) {
      eps.forEach((p, i) => {
        const left = eps.length - i;
        // Each rule takes 1/left of what reaches it, so every endpoint gets an equal share.
        const stat = left > 1 ? ` -m statistic --mode random --probability ${(1 / left).toFixed(5)}` : '';
        lines.push(`-A LAB-SERVICES -d ${s.clusterIP}/32 -p tcp -m tcp --dport ${port.port} -m comment --comment "${s.namespace}/${s.name}:${port.port}"${stat} -j DNAT --to-destination ${p.ip}:${port.targetPort}`);
      });
    }
  }
  lines.push('COMMIT', '');
  return lines.join('\n');
}

/** Renders a pod's /etc/hosts: localhost, itself, and every service by FQDN, `<svc>.<ns>` and (same namespace) `<svc>`. */
export function hostsFile(plan: LabPlan, p: PodPlan): string {
  const lines = ['127.0.0.1 localhost', '::1 localhost ip6-localhost ip6-loopback', `${p.ip} ${p.name}`];
  for (const s of plan.services) {
    const names = [`${s.name}.${s.namespace}.svc.cluster.local`, `${s.name}.${s.namespace}.svc`, `${s.name}.${s.namespace}`];
    if (s.namespace === p.namespace) names.push(s.name);
    lines.push(`${s.clusterIP} ${names.join(' ')}`);
  }
  return lines.join('\n') + '\n';
}

/** Renders a pod's resolv.conf: the hosts file answers; no real DNS server exists in the lab. */
export function resolvConf(p: PodPlan): string {
  return `# rondo lab: names come from /etc/hosts (see /etc/netns/<pod>/hosts)\nsearch ${p.namespace}.svc.cluster.local svc.cluster.local cluster.local\nnameserver 127.0.0.1\noptions ndots:5 timeout:1 attempts:1\n`;
}
