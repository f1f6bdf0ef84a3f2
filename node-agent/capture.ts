/**
 * Traffic capture in the node's network namespace: an ipset of enrolled pod IPs and the
 * agent's own iptables chains, reconciled idempotently in one batch each
 * (`ipset -exist restore`, `iptables-restore --noflush`).
 *
 * Rules (nat PREROUTING, jumped at position 1 so the agent sees a Service VIP as the
 * original destination, before kube-proxy's / the lab's DNAT):
 *   1. TCP from an enrolled pod                  -> REDIRECT 15001 (outbound)
 *   2. TCP to an enrolled pod, port 15008        -> REDIRECT 15008 (HBONE in)
 *   3. TCP to an enrolled pod, any other port    -> REDIRECT 15006 (plaintext in)
 * PREROUTING only sees packets arriving on an interface, so "from outside the node" needs
 * no interface or CIDR match: the node's own processes (kubelet probes, the agent's own
 * upstream connections) leave through OUTPUT and are never captured, and no mark is needed.
 * A local non-mesh pod counts as outside (its plaintext hits 15006 and STRICT refuses it).
 *
 * Service VIPs (the loop): a connection from a client that is not enrolled (a local non-mesh
 * pod, or a remote source whose VIP is DNATed here) to a Service VIP matches none of these
 * (the VIP is no enrolled pod): the node's service NAT (kube-proxy, the lab's LAB-SERVICES)
 * DNATs it after them, and nat PREROUTING never runs twice for one connection. When the chosen endpoint is an enrolled pod of this
 * node, policy routing sends the DNATed packet through a veth pair of the node's own
 * (`rondo-in0` -> `rondo-in1`, no ARP, one MAC): the veth clears its conntrack, so on
 * arrival it is a new connection to `podIP:port` in PREROUTING, rule 3 REDIRECTs it to 15006
 * and SO_ORIGINAL_DST reads the pod as for any plaintext inbound connection (PERMISSIVE:
 * accepted with L4 authorization and metrics; STRICT: reset). The agent's replies leave from
 * the REDIRECT address (`169.254.15.6` on `rondo-in1`), so a rule sends them back through the
 * pair the other way, where the service NAT's entry turns their source back into the VIP.
 *   ip rule 15000  iif rondo-in1          lookup main    looped once: never again
 *           15001  iif lo                 goto 15003     the node's own traffic never loops
 *           15002  ipproto tcp            lookup 15006   table 15006: <enrolled pod>/32 dev rondo-in0
 *           15003  from 169.254.15.6      lookup 15007   table 15007: default dev rondo-in1
 * Same-node mesh sources are redirected by rule 1 before any NAT, other nodes' clients were
 * DNATed on their node and arrive here addressed to the pod (rules 2-3), so every path a
 * client can take reaches the agent. rp_filter must be off or loose for the pair (set per
 * link; a node-wide `all.rp_filter=1` would still drop the looped packets).
 *
 * Bypass guard (filter FORWARD): a SYN DNATed to an enrolled pod that would still be
 * forwarded to it directly (not into the loop: routes or rules missing) is rejected with a
 * reset instead of slipping past mTLS.
 *
 * Agent down: the rules and the set stay (unless the agent was started with
 * `--cleanup-on-exit` and stopped cleanly), so captured connections meet a closed port and
 * are reset: fail closed. Enrolled pods lose connectivity until the agent is back rather
 * than silently talking plaintext (looped connections too: they meet the closed 15006).
 * Removal (`remove()`, `main.ts --uninstall`) deletes every `RONDO-*` chain, every rule
 * jumping to one, every `rondo-*` set and the loop's pair, rules and routes: also what
 * another version of the agent may have left.
 */
import { spawn } from 'node:child_process';
import { isIP } from 'node:net';
import { RondoError } from '../common/errors.ts';
import type { Logger } from '../common/log.ts';
import { PORTS } from '../common/ports.ts';

/** Name of the ipset holding this node's enrolled pod IPs. */
export const ENROLLED_SET = 'rondo-enrolled';
/** The agent's nat chain, jumped from PREROUTING at position 1. */
export const NAT_CHAIN = 'RONDO-PREROUTING';
/** The agent's filter chain, jumped from FORWARD at position 1. */
export const FILTER_CHAIN = 'RONDO-FORWARD';

/** Prefix of every iptables chain the agent makes (ipsets: the same in lower case). */
export const CHAIN_PREFIX = 'RONDO-';
/** Prefix of every ipset the agent makes. */
export const SET_PREFIX = 'rondo-';
/** Tables the agent writes to. */
export const CAPTURE_TABLES = ['nat', 'filter'] as const;

/** The veth pair DNATed connections to enrolled pods loop through (see the header). */
export const LOOP_LINKS = { out: 'rondo-in0', in: 'rondo-in1' } as const;
/** Both ends share one locally administered MAC: with ARP off, each sends to its own. */
export const LOOP_MAC = '02:72:6f:6e:64:6f';
/** Address of `rondo-in1`: what REDIRECT rewrites looped connections to, and their replies' source. */
export const LOOP_ADDRESS = '169.254.15.6';
/** Routing tables: to enrolled pods through the loop, and replies back through it. */
export const LOOP_TABLES = { toPods: 15006, replies: 15007 } as const;
/** Preferences of the agent's policy-routing rules (ahead of main at 32766). */
export const RULE_PREFS = [15000, 15001, 15002, 15003] as const;

/** Capture redirect ports. */
export const CAPTURE_PORTS = { outbound: PORTS.outboundCapture, inbound: PORTS.inboundCapture, hbone: PORTS.hbone } as const;

/** Result of one external command. */
export interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
}
/** Runs a command with optional stdin; injectable so tests can check the generated text. */
export type CommandRunner = (cmd: string, args: readonly string[], stdin?: string) => Promise<CommandResult>;

/** A capture rule change that the kernel refused; names the command and its stderr. */
export class CaptureError extends RondoError {
  constructor(message: string, options?: ErrorOptions) {
    super('RONDO_E_CAPTURE', message, options);
    this.name = 'CaptureError';
  }
}

/** Runs commands with child_process.spawn, feeding stdin, with a timeout. */
export const spawnRunner: CommandRunner = (cmd, args, stdin) =>
  new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'], timeout: 10_000 });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.on('error', (e) =>
      reject(new CaptureError(`cannot run ${cmd}: ${e.message}; is it installed and on PATH?`, { cause: e })),
    );
    child.on('close', (code) =>
      resolve({ code: code ?? -1, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() }),
    );
    child.stdin.on('error', () => undefined); // the command may exit before reading stdin
    child.stdin.end(stdin ?? '');
  });

/** The rules of the agent's nat chain, in iptables-save's canonical form. */
export function natRules(): string[] {
  const set = `-m set --match-set ${ENROLLED_SET}`;
  return [
    `-A ${NAT_CHAIN} -p tcp ${set} src -j REDIRECT --to-ports ${CAPTURE_PORTS.outbound}`,
    `-A ${NAT_CHAIN} -p tcp ${set} dst -m tcp --dport ${CAPTURE_PORTS.hbone} -j REDIRECT --to-ports ${CAPTURE_PORTS.hbone}`,
    `-A ${NAT_CHAIN} -p tcp ${set} dst -j REDIRECT --to-ports ${CAPTURE_PORTS.inbound}`,
  ];
}

/** The rules of the agent's filter chain (DNAT bypass guard), canonical form. */
export function filterRules(): string[] {
  return [
    `-A ${FILTER_CHAIN} ! -o ${LOOP_LINKS.out} -p tcp -m set --match-set ${ENROLLED_SET} dst -m tcp --tcp-flags FIN,SYN,RST,ACK SYN -m conntrack --ctstate DNAT -j REJECT --reject-with tcp-reset`,
  ];
}

/** What the agent's chains look like now in one table, parsed from iptables-save. */
export interface ChainState {
  exists: boolean;
  rules: string[];
  /** 0-based positions of the jump among the parent chain's rules. */
  jumpPositions: number[];
}

/** Parses `iptables-save -t <table>` output for `chain` and its jump from `parent`. */
export function parseChain(save: string, parent: string, chain: string): ChainState {
  const rules: string[] = [];
  const jumpPositions: number[] = [];
  let exists = false;
  let parentIdx = 0;
  for (const line of save.split('\n')) {
    if (line.startsWith(`:${chain} `)) exists = true;
    else if (line.startsWith(`-A ${chain} `)) rules.push(line.trim());
    else if (line.startsWith(`-A ${parent} `)) {
      if (line.trim() === `-A ${parent} -j ${chain}`) jumpPositions.push(parentIdx);
      parentIdx++;
    }
  }
  return { exists, rules, jumpPositions };
}

/** True when the chain holds exactly `want` and is jumped once, first. */
export function chainInPlace(s: ChainState, want: readonly string[]): boolean {
  return (
    s.exists &&
    s.jumpPositions.length === 1 &&
    s.jumpPositions[0] === 0 &&
    s.rules.length === want.length &&
    s.rules.every((r, i) => r === want[i])
  );
}

/**
 * iptables-restore --noflush input that makes `chain` hold exactly `want`, jumped once at
 * position 1 of `parent`. Declaring the chain flushes it in --noflush mode; surplus or
 * misplaced jumps are deleted first. One batch: the kernel applies it atomically.
 */
export function renderChainRestore(table: string, parent: string, chain: string, s: ChainState, want: readonly string[]): string {
  const lines = [`*${table}`, `:${chain} - [0:0]`, ...want];
  const jumpOk = s.jumpPositions.length === 1 && s.jumpPositions[0] === 0;
  if (!jumpOk) {
    for (let i = 0; i < s.jumpPositions.length; i++) lines.push(`-D ${parent} -j ${chain}`);
    lines.push(`-I ${parent} 1 -j ${chain}`);
  }
  lines.push('COMMIT', '');
  return lines.join('\n');
}

/** iptables-restore --noflush input removing the chain and every jump to it (empty if absent). */
export function renderChainRemoval(table: string, parent: string, chain: string, s: ChainState): string {
  if (!s.exists && s.jumpPositions.length === 0) return '';
  const lines = [`*${table}`];
  for (let i = 0; i < s.jumpPositions.length; i++) lines.push(`-D ${parent} -j ${chain}`);
  if (s.exists) lines.push(`-F ${chain}`, `-X ${chain}`);
  lines.push('COMMIT', '');
  return lines.join('\n');
}

/** What removing the agent's rules from one table takes, parsed from `iptables-save -t <table>`. */
export interface TableRemoval {
  /** `RONDO-*` chains in the table. */
  chains: string[];
  /** Rules of other chains that jump (or goto) to one of them, as `-D` lines. */
  jumps: string[];
}

/** Finds every `RONDO-*` chain of a table and every rule elsewhere that jumps to one. */
export function parseTableRemoval(save: string): TableRemoval {
  const chains: string[] = [];
  const jumps: string[] = [];
  const target = new RegExp(` -[jg] ${CHAIN_PREFIX}\\S+(?: |$)`);
  for (const raw of save.split('\n')) {
    const line = raw.trim();
    if (line.startsWith(`:${CHAIN_PREFIX}`)) chains.push(line.slice(1).split(' ')[0]!);
    // Rules inside our chains go with the flush; only other chains' jumps need deleting.
    else if (line.startsWith('-A ') && !line.startsWith(`-A ${CHAIN_PREFIX}`) && target.test(line)) jumps.push(`-D ${line.slice(3)}`);
  }
  return { chains, jumps };
}

/**
 * iptables-restore --noflush input removing them: jumps first (a referenced chain cannot be
 * deleted), then every chain flushed before any is deleted (ours may jump to each other).
 * Empty when there is nothing to remove.
 */
export function renderTableRemoval(table: string, r: TableRemoval): string {
  if (r.chains.length === 0 && r.jumps.length === 0) return '';
  return [`*${table}`, ...r.jumps, ...r.chains.map((c) => `-F ${c}`), ...r.chains.map((c) => `-X ${c}`), 'COMMIT', ''].join('\n');
}

/** Parses the members of `ipset list <set> -o save` output. */
export function parseIpsetSave(save: string, set: string = ENROLLED_SET): Set<string> {
  const out = new Set<string>();
  const prefix = `add ${set} `;
  for (const line of save.split('\n')) {
    if (line.startsWith(prefix)) out.add(line.slice(prefix.length).trim().split(' ')[0]!);
  }
  return out;
}

/** `ipset -exist restore` input that creates the set if needed and syncs its members. */
export function renderIpsetRestore(current: ReadonlySet<string>, desired: ReadonlySet<string>, set: string = ENROLLED_SET): string {
  const lines = [`create ${set} hash:ip family inet`];
  for (const ip of desired) if (!current.has(ip)) lines.push(`add ${set} ${ip}`);
  for (const ip of current) if (!desired.has(ip)) lines.push(`del ${set} ${ip}`);
  lines.push('');
  return lines.join('\n');
}

/** The policy-routing rules of the loop, as `ip -4 rule show` prints them, by preference. */
export function loopRules(): Map<number, string> {
  const [p0, p1, p2, p3] = RULE_PREFS;
  return new Map([
    [p0, `from all iif ${LOOP_LINKS.in} lookup main`],
    [p1, `from all iif lo goto ${p3}`],
    [p2, `from all ipproto tcp lookup ${LOOP_TABLES.toPods}`],
    [p3, `from ${LOOP_ADDRESS} lookup ${LOOP_TABLES.replies}`],
  ]);
}

/** Parses `ip -4 rule show` into preference -> selectors and action (several per preference possible). */
export function parseRules(show: string): Map<number, string[]> {
  const out = new Map<number, string[]>();
  for (const line of show.split('\n')) {
    const m = /^(\d+):\s+(.*?)\s*$/.exec(line);
    if (m === null) continue;
    const pref = Number(m[1]);
    out.set(pref, [...(out.get(pref) ?? []), m[2]!.replace(/\s+/g, ' ')]);
  }
  return out;
}

/** Parses `ip -4 route show table N` into destination -> the rest of the line. */
export function parseRoutes(show: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of show.split('\n')) {
    const t = line.trim().replace(/\s+/g, ' ');
    if (t === '') continue;
    const sp = t.indexOf(' ');
    out.set(sp < 0 ? t : t.slice(0, sp), sp < 0 ? '' : t.slice(sp + 1));
  }
  return out;
}

/**
 * `ip -batch` lines that make the loop's rules and both tables hold exactly what they should
 * for these enrolled pod IPs (empty: nothing to change). Routes go first and the rule that
 * starts the loop last, so no packet is looped before the way back exists.
 */
export function renderLoopRouting(rules: ReadonlyMap<number, readonly string[]>, toPods: ReadonlyMap<string, string>,
  replies: ReadonlyMap<string, string>, enrolled: ReadonlySet<string>): string[] {
  const lines: string[] = [];
  const podRoute = `dev ${LOOP_LINKS.out} scope link`;
  for (const ip of enrolled) if (toPods.get(ip) !== podRoute) lines.push(`route replace ${ip}/32 dev ${LOOP_LINKS.out} table ${LOOP_TABLES.toPods}`);
  for (const dst of toPods.keys()) if (!enrolled.has(dst)) lines.push(`route del ${dst} table ${LOOP_TABLES.toPods}`);
  const replyRoute = `dev ${LOOP_LINKS.in} scope link`;
  if (replies.size !== 1 || replies.get('default') !== replyRoute) {
    for (const dst of replies.keys()) lines.push(`route del ${dst} table ${LOOP_TABLES.replies}`);
    lines.push(`route replace default dev ${LOOP_LINKS.in} table ${LOOP_TABLES.replies}`);
  }
  const want = loopRules();
  // 15003 (the way back) and 15000/15001 (the exits) before 15002, which starts looping.
  for (const pref of [RULE_PREFS[3], RULE_PREFS[0], RULE_PREFS[1], RULE_PREFS[2]]) {
    const have = rules.get(pref) ?? [];
    const rule = want.get(pref)!;
    if (have.length === 1 && have[0] === rule) continue;
    for (let i = 0; i < have.length; i++) lines.push(`rule del pref ${pref}`);
    lines.push(`rule add pref ${pref} ${rule.replace(/^from all /, '')}`);
  }
  return lines;
}

/** `ip -batch` lines creating the veth pair (see the header). */
export function renderLoopLink(): string[] {
  const { out, in: peer } = LOOP_LINKS;
  return [
    `link add ${out} address ${LOOP_MAC} type veth peer name ${peer} address ${LOOP_MAC}`,
    `link set ${out} arp off up`,
    `link set ${peer} arp off up`,
    `addr replace ${LOOP_ADDRESS}/32 dev ${peer}`,
  ];
}

/** True for a rule an agent's loop put in place (by preference and target), also another version's. */
export function isLoopRule(pref: number, rule: string): boolean {
  return (RULE_PREFS as readonly number[]).includes(pref) &&
    (rule.includes('rondo-') || rule.includes(LOOP_ADDRESS) || Object.values(LOOP_TABLES).some((t) => rule.includes(`lookup ${t}`)) || rule.includes('goto '));
}

/** Options of Capture.create. */
export interface CaptureOptions {
  log: Logger;
  /** Command runner; tests inject one, e2e wraps `ip netns exec`. */
  run?: CommandRunner;
  /** Reject SYNs DNATed to enrolled pods that would bypass the loop, in FORWARD (default true). */
  dnatGuard?: boolean;
}

/** Owns the ipset and iptables chains of the node's capture. */
export class Capture {
  readonly #log: Logger;
  readonly #run: CommandRunner;
  readonly #dnatGuard: boolean;
  // Serialises reconcile/remove: two batches computed from the same snapshot would fight.
  #queue: Promise<unknown> = Promise.resolve();

  private constructor(o: CaptureOptions) {
    this.#log = o.log;
    this.#run = o.run ?? spawnRunner;
    this.#dnatGuard = o.dnatGuard ?? true;
  }

  /** Creates the capture controller (no kernel changes until reconcile). */
  static create(o: CaptureOptions): Capture {
    return new Capture(o);
  }

  /** Makes the set hold exactly these IPv4 pod IPs and puts the chains in place; idempotent. */
  reconcile(enrolledLocalPodIps: string[]): Promise<void> {
    return this.#serial(() => this.#reconcile(enrolledLocalPodIps));
  }

  /**
   * Removes every `RONDO-*` chain, every jump to one and every `rondo-*` set (uninstall,
   * `--cleanup-on-exit`); idempotent, and queued behind a reconcile in flight.
   */
  remove(): Promise<void> {
    return this.#serial(() => this.#remove());
  }

  /** Current rules and set members, for the admin endpoint and tests. */
  async dump(): Promise<string> {
    const nat = await this.#must('iptables-save', ['-t', 'nat']);
    const filter = await this.#must('iptables-save', ['-t', 'filter']);
    const set = await this.#run('ipset', ['list', ENROLLED_SET, '-o', 'save']);
    const pick = (save: string): string[] =>
      save.split('\n').filter((l) => l.includes('RONDO-') && !l.startsWith('#'));
    const members = set.code === 0 ? set.stdout.split('\n').filter((l) => l.length > 0).map((l) => l.replace(/ initval \S+/, '')) : [];
    const rules = [...parseRules((await this.#run('ip', ['-4', 'rule', 'show'])).stdout)]
      .flatMap(([pref, list]) => list.filter((r) => isLoopRule(pref, r)).map((r) => `rule ${pref}: ${r}`));
    const routes: string[] = [];
    for (const t of Object.values(LOOP_TABLES)) {
      const r = await this.#run('ip', ['-4', 'route', 'show', 'table', String(t)]);
      if (r.code === 0) for (const [dst, rest] of parseRoutes(r.stdout)) routes.push(`route table ${t}: ${dst} ${rest}`);
    }
    return [...pick(nat.stdout), ...pick(filter.stdout), ...members, ...rules, ...routes].join('\n') + '\n';
  }

  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.#queue.then(fn, fn);
    this.#queue = next.catch(() => undefined);
    return next;
  }

  async #reconcile(ips: string[]): Promise<void> {
    const desired = new Set<string>();
    for (const ip of ips) {
      if (isIP(ip) === 4) desired.add(ip);
      else this.#log.warn('not capturing a non-IPv4 pod address: IPv6 capture is not implemented', { ip });
    }
    const listed = await this.#run('ipset', ['list', ENROLLED_SET, '-o', 'save']);
    const current = listed.code === 0 ? parseIpsetSave(listed.stdout) : new Set<string>();
    const setScript = renderIpsetRestore(current, desired);
    // The set must exist before any rule references it.
    if (listed.code !== 0 || setScript.split('\n').length > 2) {
      await this.#must('ipset', ['-exist', 'restore'], setScript);
    }
    const looped = await this.#ensureLoop(desired);
    const changed = await this.#ensureChain('nat', 'PREROUTING', NAT_CHAIN, natRules());
    const guard = this.#dnatGuard
      ? await this.#ensureChain('filter', 'FORWARD', FILTER_CHAIN, filterRules())
      : await this.#removeChain('filter', 'FORWARD', FILTER_CHAIN);
    const added = [...desired].filter((ip) => !current.has(ip)).length;
    const removed = [...current].filter((ip) => !desired.has(ip)).length;
    if (changed || guard || looped || added > 0 || removed > 0) {
      this.#log.info('capture reconciled', { enrolled: desired.size, added, removed, rulesRewritten: changed || guard, loopRewritten: looped });
    }
  }

  /** The veth pair, its routes and rules (see the header); true when something was written. */
  async #ensureLoop(enrolled: ReadonlySet<string>): Promise<boolean> {
    let wrote = false;
    const link = await this.#run('ip', ['-o', 'link', 'show', 'dev', LOOP_LINKS.in]);
    if (link.code !== 0) {
      await this.#must('ip', ['-batch', '-'], renderLoopLink().join('\n') + '\n');
      await this.#must('sysctl', ['-q', '-w', ...Object.values(LOOP_LINKS).map((l) => `net.ipv4.conf.${l}.rp_filter=0`)]);
      // The kernel uses the larger of `all` and the link's value: strict mode wins over our 0.
      const all = await this.#run('sysctl', ['-n', 'net.ipv4.conf.all.rp_filter']);
      if (all.stdout.trim() === '1') {
        this.#log.warn('net.ipv4.conf.all.rp_filter=1 (strict) drops the looped packets: non-mesh clients reaching an enrolled pod of this node through a Service VIP will time out; set it to 2 (loose) or 0');
      }
      wrote = true;
    } else if (!/[<,]UP[,>]/.test(link.stdout)) {
      await this.#must('ip', ['-batch', '-'], renderLoopLink().slice(1).join('\n') + '\n');
      wrote = true;
    }
    const rules = parseRules((await this.#must('ip', ['-4', 'rule', 'show'])).stdout);
    const lines = renderLoopRouting(rules, await this.#routes(LOOP_TABLES.toPods), await this.#routes(LOOP_TABLES.replies), enrolled);
    if (lines.length > 0) {
      await this.#must('ip', ['-batch', '-'], lines.join('\n') + '\n');
      wrote = true;
    }
    return wrote;
  }

  // A table nothing was ever put in lists as an error on some iproute2 versions: empty.
  async #routes(table: number): Promise<Map<string, string>> {
    const r = await this.#run('ip', ['-4', 'route', 'show', 'table', String(table)]);
    return r.code === 0 ? parseRoutes(r.stdout) : new Map();
  }

  async #removeLoop(): Promise<string[]> {
    const removed: string[] = [];
    const lines: string[] = [];
    for (const [pref, list] of parseRules((await this.#must('ip', ['-4', 'rule', 'show'])).stdout)) {
      for (const r of list) if (isLoopRule(pref, r)) { lines.push(`rule del pref ${pref}`); removed.push(`rule ${pref}`); }
    }
    // Deleting one end of a veth deletes both, and the routes through them.
    for (const l of Object.values(LOOP_LINKS)) {
      if ((await this.#run('ip', ['-o', 'link', 'show', 'dev', l])).code === 0) { lines.push(`link del ${l}`); removed.push(`link ${l}`); break; }
    }
    if (lines.length > 0) await this.#must('ip', ['-batch', '-'], lines.join('\n') + '\n');
    for (const t of Object.values(LOOP_TABLES)) {
      if ((await this.#routes(t)).size === 0) continue;
      await this.#must('ip', ['-4', 'route', 'flush', 'table', String(t)]);
      removed.push(`table ${t}`);
    }
    return removed;
  }

  async #ensureChain(table: string, parent: string, chain: string, want: string[]): Promise<boolean> {
    const save = await this.#must('iptables-save', ['-t', table]);
    const s = parseChain(save.stdout, parent, chain);
    if (chainInPlace(s, want)) return false;
    await this.#must('iptables-restore', ['--noflush'], renderChainRestore(table, parent, chain, s, want));
    return true;
  }

  async #removeChain(table: string, parent: string, chain: string): Promise<boolean> {
    const save = await this.#must('iptables-save', ['-t', table]);
    const script = renderChainRemoval(table, parent, chain, parseChain(save.stdout, parent, chain));
    if (script === '') return false;
    await this.#must('iptables-restore', ['--noflush'], script);
    return true;
  }

  async #remove(): Promise<void> {
    const chains: string[] = [];
    let jumps = 0;
    for (const table of CAPTURE_TABLES) {
      const save = await this.#must('iptables-save', ['-t', table]);
      const r = parseTableRemoval(save.stdout);
      const script = renderTableRemoval(table, r);
      if (script === '') continue;
      await this.#must('iptables-restore', ['--noflush'], script);
      chains.push(...r.chains.map((c) => `${table}/${c}`));
      jumps += r.jumps.length;
    }
    // Sets last: the kernel refuses to destroy a set a rule still matches on.
    const listed = await this.#must('ipset', ['list', '-n']);
    const sets = listed.stdout.split('\n').map((l) => l.trim()).filter((n) => n.startsWith(SET_PREFIX));
    for (const set of sets) await this.#must('ipset', ['destroy', set]);
    const loop = await this.#removeLoop();
    if (chains.length === 0 && jumps === 0 && sets.length === 0 && loop.length === 0) this.#log.info('capture: nothing to remove');
    else this.#log.info('capture removed', { chains, jumps, sets, loop });
  }

  async #must(cmd: string, args: string[], stdin?: string): Promise<CommandResult> {
    const r = await this.#run(cmd, args, stdin);
    if (r.code !== 0) {
      throw new CaptureError(
        `${cmd} ${args.join(' ')} failed (exit ${r.code}): ${r.stderr.trim() || r.stdout.trim()}; ` +
          'does the agent run as root (CAP_NET_ADMIN) in the node network namespace with the ip_set and xt_set modules available?',
      );
    }
    return r;
  }
}
