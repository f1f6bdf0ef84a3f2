/**
 * Builds the lab's network: the bridge netns, node and controller netns on the underlay,
 * pod netns with veths to their node, routes, sysctls and the LAB-SERVICES DNAT chain.
 * Every link is created inside a lab netns (`ip -n`), so nothing touches the root namespace.
 */
import type { CommandRunner } from './run-command.ts';
import type { LabPlan, NodePlan, PodPlan } from './plan.ts';
import { servicesRules } from './plan.ts';

/** Node sysctls: forwarding, no reverse-path filtering (pod /32s on veths), many short connections. */
const NODE_SYSCTLS = [
  'net.ipv4.ip_forward=1',
  'net.ipv4.conf.all.rp_filter=0',
  'net.ipv4.conf.default.rp_filter=0',
  'net.ipv4.tcp_tw_reuse=1',
  'net.ipv4.ip_local_port_range=15100 64999',
];

/** Pod sysctls: load generators in pods open many short connections (TIME-WAIT reuse, wide port range). */
const POD_SYSCTLS = ['net.ipv4.tcp_tw_reuse=1', 'net.ipv4.ip_local_port_range=15100 64999'];

/** Runs `ip` commands for one netns as one `ip -n ns -batch -` call (one process per netns). */
async function ipBatch(run: CommandRunner, netns: string, lines: string[]): Promise<void> {
  if (lines.length > 0) await run('ip', ['-n', netns, '-batch', '-'], { input: lines.join('\n') + '\n' });
}

/** Creates one network namespace with its loopback up. */
export async function addNetns(run: CommandRunner, name: string): Promise<void> {
  await run('ip', ['netns', 'add', name]);
  await run('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
}

/** The underlay: a bridge in its own netns, and one veth per node plus one for the controller. */
export async function buildUnderlay(run: CommandRunner, plan: LabPlan): Promise<void> {
  const prefix = plan.underlayCIDR.split('/')[1] ?? '24';
  const br = plan.bridge;
  const members: { netns: string; port: string; ip: string }[] = [
    { netns: plan.controller.netns, port: plan.controller.bridgePort, ip: plan.controller.ip },
    ...plan.nodes.map((n) => ({ netns: n.netns, port: n.bridgePort, ip: n.ip })),
  ];
  await ipBatch(run, br.netns, [
    `link add ${br.device} type bridge`,
    `link set ${br.device} up`,
    ...members.flatMap((m) => [`link add ${m.port} type veth peer name eth0 netns ${m.netns}`, `link set ${m.port} master ${br.device} up`]),
  ]);
  await Promise.all(members.map((m) => ipBatch(run, m.netns, [`addr add ${m.ip}/${prefix} dev eth0`, 'link set eth0 up'])));
  // The controller answers pods (waypoints) directly: it needs a route to every pod CIDR.
  await ipBatch(run, plan.controller.netns, plan.nodes.map((n) => `route add ${n.podCIDR} via ${n.ip}`));
}

/** Node netns: sysctls, routes to the other nodes' pod CIDRs, and the LAB-SERVICES chain. */
export async function buildNode(run: CommandRunner, plan: LabPlan, node: NodePlan): Promise<void> {
  await run('ip', ['netns', 'exec', node.netns, 'sysctl', '-q', '-w', ...NODE_SYSCTLS]);
  await ipBatch(run, node.netns, plan.nodes.filter((o) => o !== node).map((o) => `route add ${o.podCIDR} via ${o.ip}`));
  await run('ip', ['netns', 'exec', node.netns, 'iptables-restore', '--noflush'], { input: servicesRules(plan, () => true, true) });
}

/**
 * Pod netns: a veth whose node side carries the node's pod gateway address (/32, the same on
 * every pod veth of the node) and a /32 route to the pod; the pod has its /32 and a default
 * route via that gateway. The gateway address on the veth also gives REDIRECT a target.
 */
export async function buildPod(run: CommandRunner, node: NodePlan, pod: PodPlan): Promise<void> {
  await ipBatch(run, node.netns, [
    `link add ${pod.hostVeth} type veth peer name eth0 netns ${pod.netns}`,
    `addr add ${node.gateway}/32 dev ${pod.hostVeth}`,
    `link set ${pod.hostVeth} up`,
    `route add ${pod.ip}/32 dev ${pod.hostVeth} src ${node.gateway}`,
  ]);
  await ipBatch(run, pod.netns, [
    `addr add ${pod.ip}/32 dev eth0`,
    'link set eth0 up',
    `route add ${node.gateway} dev eth0 scope link`,
    `route add default via ${node.gateway} dev eth0 src ${pod.ip}`,
  ]);
  await run('ip', ['netns', 'exec', pod.netns, 'sysctl', '-q', '-w', ...POD_SYSCTLS]);
}

/** Rewrites LAB-SERVICES in every node netns for the endpoints now ready. */
export async function syncServices(run: CommandRunner, plan: LabPlan, ready: (podKey: string) => boolean): Promise<void> {
  const rules = servicesRules(plan, ready, false);
  await Promise.all(plan.nodes.map((n) => run('ip', ['netns', 'exec', n.netns, 'iptables-restore', '--noflush'], { input: rules })));
}

/** Lists network namespaces (names only). */
export async function listNetns(run: CommandRunner): Promise<string[]> {
  const r = await run('ip', ['netns', 'list'], { allowFail: true });
  return r.stdout.split('\n').map((l) => l.split(' ')[0] ?? '').filter((n) => n !== '');
}
