import t from 'tap';
import { createLogger } from '../../common/log.ts';
import {
  Capture, CaptureError, chainInPlace, natRules, parseChain, parseIpsetSave, parseTableRemoval, renderChainRemoval,
  renderChainRestore, renderIpsetRestore, renderTableRemoval, type CommandRunner,
} from '../../node-agent/capture.ts';

const log = createLogger('test', { write: () => true }, 'error');

/** A fake kernel: keeps iptables-save text per table and the set, applies our scripts. */
function fakeKernel() {
  const calls: { cmd: string; args: string[]; stdin?: string }[] = [];
  const tables: Record<string, { chains: Set<string>; rules: string[] }> = {
    nat: { chains: new Set(['PREROUTING', 'INPUT', 'OUTPUT', 'POSTROUTING']), rules: ['-A PREROUTING -j LAB-SERVICES'] },
    filter: { chains: new Set(['INPUT', 'FORWARD', 'OUTPUT']), rules: [] },
  };
  let set: Set<string> | undefined;
  const otherSets = new Set<string>();
  let rpFilter = 0;
  const run: CommandRunner = (cmd, args, stdin) => {
    calls.push(stdin === undefined ? { cmd, args: [...args] } : { cmd, args: [...args], stdin });
    const ok = (stdout = '') => Promise.resolve({ code: 0, stdout, stderr: '' });
    if (cmd === 'iptables-save') {
      const tb = tables[args[1]!]!;
      return ok([`*${args[1]}`, ...[...tb.chains].map((c) => `:${c} - [0:0]`), ...tb.rules, 'COMMIT'].join('\n'));
    }
    if (cmd === 'iptables-restore') {
      let tb = tables.nat!;
      for (const line of stdin!.split('\n')) {
        if (line.startsWith('*')) tb = tables[line.slice(1)]!;
        else if (line.startsWith(':')) {
          const c = line.slice(1).split(' ')[0]!;
          tb.chains.add(c);
          tb.rules = tb.rules.filter((r) => !r.startsWith(`-A ${c} `));
        } else if (line.startsWith('-A ')) tb.rules.push(line);
        else if (line.startsWith('-I ')) {
          const [, parent, , ...rest] = line.split(' ');
          const idx = tb.rules.findIndex((r) => r.startsWith(`-A ${parent} `));
          tb.rules.splice(idx < 0 ? tb.rules.length : idx, 0, `-A ${parent} ${rest.join(' ')}`);
        } else if (line.startsWith('-D ')) {
          const i = tb.rules.indexOf(`-A ${line.slice(3)}`);
          if (i < 0) return Promise.resolve({ code: 1, stdout: '', stderr: 'Bad rule' });
          tb.rules.splice(i, 1);
        } else if (line.startsWith('-F ')) tb.rules = tb.rules.filter((r) => !r.startsWith(`-A ${line.slice(3)} `));
        else if (line.startsWith('-X ')) tb.chains.delete(line.slice(3));
      }
      return ok();
    }
    if (cmd === 'ipset' && args[0] === 'list' && args[1] === '-n') return ok([...(set !== undefined ? ['rondo-enrolled'] : []), ...otherSets].join('\n'));
    if (cmd === 'ipset' && args[0] === 'list') {
      if (set === undefined) return Promise.resolve({ code: 1, stdout: '', stderr: 'The set with the given name does not exist' });
      return ok(['create rondo-enrolled hash:ip family inet hashsize 1024 maxelem 65536', ...[...set].map((ip) => `add rondo-enrolled ${ip}`)].join('\n'));
    }
    if (cmd === 'ipset' && args[1] === 'restore') {
      for (const line of stdin!.split('\n')) {
        const [op, , ip] = line.split(' ');
        if (op === 'create') set ??= new Set();
        else if (op === 'add') set!.add(ip!);
        else if (op === 'del') set!.delete(ip!);
      }
      return ok();
    }
    if (cmd === 'ipset' && args[0] === 'destroy') {
      // As the kernel: a set some rule still matches on cannot go.
      if (Object.values(tables).some((tb) => tb.rules.some((r) => r.includes(`--match-set ${args[1]} `)))) return Promise.resolve({ code: 1, stdout: '', stderr: 'Set cannot be destroyed: it is in use by a kernel component' });
      if (args[1] === 'rondo-enrolled') set = undefined; else otherSets.delete(args[1]!);
      return ok();
    }
    if (cmd === 'sysctl') return ok(args[0] === '-n' ? `${rpFilter}\n` : '');
    if (cmd === 'ip') return ip(args, stdin);
    return Promise.resolve({ code: 127, stdout: '', stderr: 'unknown' });
  };
  // Links, policy rules and routing tables, as `ip` shows and changes them.
  const links = new Set<string>();
  const rules: { pref: number; rule: string }[] = [];
  const routes = new Map<string, Map<string, string>>();
  const tableOf = (t: string): Map<string, string> => { let m = routes.get(t); if (m === undefined) { m = new Map(); routes.set(t, m); } return m; };
  const ip = (args: readonly string[], stdin?: string): Promise<{ code: number; stdout: string; stderr: string }> => {
    const ok = (stdout = '') => Promise.resolve({ code: 0, stdout, stderr: '' });
    const a = args.join(' ');
    if (a.startsWith('-o link show dev ')) {
      const l = args.at(-1)!;
      return links.has(l) ? ok(`5: ${l}: <NOARP,UP,LOWER_UP> mtu 1500`) : Promise.resolve({ code: 1, stdout: '', stderr: `Device "${l}" does not exist.` });
    }
    if (a === '-4 rule show') {
      const all = [{ pref: 0, rule: 'from all lookup local' }, ...rules, { pref: 32766, rule: 'from all lookup main' }].sort((x, y) => x.pref - y.pref);
      return ok(all.map((r) => `${r.pref}:\t${r.rule}`).join('\n') + '\n');
    }
    if (a.startsWith('-4 route show table ')) return ok([...tableOf(args.at(-1)!)].map(([d, r]) => `${d} ${r} \n`).join(''));
    if (a.startsWith('-4 route flush table ')) { routes.delete(args.at(-1)!); return ok(); }
    if (a === '-batch -') {
      for (const line of stdin!.split('\n').filter((l) => l !== '')) {
        const w = line.split(' ');
        if (line.startsWith('link add ')) { links.add(w[2]!); links.add(w[9]!); }
        else if (line.startsWith('link del ')) {
          links.clear();
          for (const m of routes.values()) for (const [d, r] of m) if (/dev rondo-in[01] /.test(r)) m.delete(d);
        } else if (line.startsWith('route replace ')) tableOf(w.at(-1)!).set(w[2]!.replace(/\/32$/, ''), `${w.slice(3, -2).join(' ')} scope link`);
        else if (line.startsWith('route del ')) tableOf(w.at(-1)!).delete(w[2]!);
        else if (line.startsWith('rule del pref ')) { const i = rules.findIndex((r) => r.pref === Number(w[3])); if (i < 0) return Promise.resolve({ code: 2, stdout: '', stderr: 'RTNETLINK answers: No such file or directory' }); rules.splice(i, 1); }
        else if (line.startsWith('rule add pref ')) { const rest = w.slice(4).join(' '); rules.push({ pref: Number(w[3]), rule: rest.startsWith('from ') ? rest : `from all ${rest}` }); }
      }
      return ok();
    }
    return Promise.resolve({ code: 255, stdout: '', stderr: `unknown ip ${a}` });
  };
  return { run, calls, tables, otherSets, links, rules, routes, get set() { return set; }, strictRpFilter() { rpFilter = 1; } };
}

t.test('first reconcile creates the set, the chains and one jump at position 1, in batches', async (t) => {
  const k = fakeKernel();
  const cap = Capture.create({ log, run: k.run });
  await cap.reconcile(['10.244.1.5', '10.244.1.6']);
  t.same([...k.set!].sort(), ['10.244.1.5', '10.244.1.6']);
  const nat = k.tables.nat!.rules;
  t.equal(nat[0], '-A PREROUTING -j RONDO-PREROUTING', 'jump ahead of the service NAT');
  t.equal(nat[1], '-A PREROUTING -j LAB-SERVICES');
  t.same(nat.filter((r) => r.startsWith('-A RONDO-PREROUTING')), [
    '-A RONDO-PREROUTING -p tcp -m set --match-set rondo-enrolled src -j REDIRECT --to-ports 15001',
    '-A RONDO-PREROUTING -p tcp -m set --match-set rondo-enrolled dst -m tcp --dport 15008 -j REDIRECT --to-ports 15008',
    '-A RONDO-PREROUTING -p tcp -m set --match-set rondo-enrolled dst -j REDIRECT --to-ports 15006',
  ]);
  t.same(k.tables.filter!.rules.filter((r) => r.startsWith('-A FORWARD')), ['-A FORWARD -j RONDO-FORWARD']);
  t.same(k.tables.filter!.rules.filter((r) => r.startsWith('-A RONDO-FORWARD')), [
    '-A RONDO-FORWARD ! -o rondo-in0 -p tcp -m set --match-set rondo-enrolled dst -m tcp --tcp-flags FIN,SYN,RST,ACK SYN -m conntrack --ctstate DNAT -j REJECT --reject-with tcp-reset',
  ], 'the guard lets the loop through');
  const restores = k.calls.filter((c) => c.cmd === 'iptables-restore');
  t.equal(restores.length, 2, 'one batch per table');
  t.ok(restores.every((c) => c.args.includes('--noflush')));
  // The loop for connections the service NAT sent to an enrolled pod.
  t.same([...k.links].sort(), ['rondo-in0', 'rondo-in1']);
  t.same(k.rules.sort((a, b) => a.pref - b.pref), [
    { pref: 15000, rule: 'from all iif rondo-in1 lookup main' },
    { pref: 15001, rule: 'from all iif lo goto 15003' },
    { pref: 15002, rule: 'from all ipproto tcp lookup 15006' },
    { pref: 15003, rule: 'from 169.254.15.6 lookup 15007' },
  ]);
  t.same([...k.routes.get('15006')!].sort(), [['10.244.1.5', 'dev rondo-in0 scope link'], ['10.244.1.6', 'dev rondo-in0 scope link']]);
  t.same([...k.routes.get('15007')!], [['default', 'dev rondo-in1 scope link']]);
  const batches = k.calls.filter((c) => c.cmd === 'ip' && c.args[0] === '-batch').map((c) => c.stdin!);
  t.match(batches[0], /^link add rondo-in0 address 02:72:6f:6e:64:6f type veth peer name rondo-in1 address 02:72:6f:6e:64:6f\nlink set rondo-in0 arp off up\nlink set rondo-in1 arp off up\naddr replace 169\.254\.15\.6\/32 dev rondo-in1\n$/);
  t.match(batches[1], /rule add pref 15001 iif lo goto 15003\nrule add pref 15002 ipproto tcp lookup 15006\n$/, 'the rule that starts looping comes last');
  t.match(k.calls.find((c) => c.cmd === 'sysctl'), { args: ['-q', '-w', 'net.ipv4.conf.rondo-in0.rp_filter=0', 'net.ipv4.conf.rondo-in1.rp_filter=0'] });
});

t.test('reconcile again (and from a fresh instance, as after a restart) changes nothing', async (t) => {
  const k = fakeKernel();
  await Capture.create({ log, run: k.run }).reconcile(['10.244.1.5']);
  const before = JSON.stringify(k.tables);
  const n = k.calls.length;
  await Capture.create({ log, run: k.run }).reconcile(['10.244.1.5']);
  t.equal(JSON.stringify(k.tables), before);
  t.notOk(k.calls.slice(n).some((c) => c.cmd === 'iptables-restore' || c.args[1] === 'restore' || c.args[0] === '-batch' || c.cmd === 'sysctl'), 'no writes');
});

t.test('pods enrolled and removed at run time: only the set changes', async (t) => {
  const k = fakeKernel();
  const cap = Capture.create({ log, run: k.run });
  await cap.reconcile(['10.244.1.5', '10.244.1.6']);
  const n = k.calls.length;
  await cap.reconcile(['10.244.1.6', '10.244.1.7', 'fd00::1']);
  t.same([...k.set!].sort(), ['10.244.1.6', '10.244.1.7']);
  const writes = k.calls.slice(n).filter((c) => c.stdin !== undefined);
  t.equal(writes.length, 2, 'the set and the loop routes');
  t.match(writes[0]!.stdin, /add rondo-enrolled 10\.244\.1\.7\ndel rondo-enrolled 10\.244\.1\.5/);
  t.equal(writes[1]!.stdin, 'route replace 10.244.1.7/32 dev rondo-in0 table 15006\nroute del 10.244.1.5 table 15006\n');
  t.same([...k.routes.get('15006')!.keys()].sort(), ['10.244.1.6', '10.244.1.7']);
});

t.test('a node-wide strict rp_filter, which would drop looped packets, is warned about', async (t) => {
  const k = fakeKernel();
  k.strictRpFilter();
  const lines: string[] = [];
  await Capture.create({ log: createLogger('test', { write: (l: string) => lines.push(l) }, 'warn'), run: k.run }).reconcile(['10.244.1.5']);
  t.match(lines.join(''), /all\.rp_filter=1 \(strict\) drops the looped packets.*set it to 2 \(loose\) or 0/);
});

t.test('a loop rule or route changed by someone else is put back, and nothing else of theirs is touched', async (t) => {
  const k = fakeKernel();
  await Capture.create({ log, run: k.run }).reconcile(['10.244.1.5']);
  k.rules.splice(k.rules.findIndex((r) => r.pref === 15002), 1);
  k.rules.push({ pref: 15003, rule: 'from all lookup 99' }, { pref: 100, rule: 'from all fwmark 0x1 lookup 7' });
  k.routes.get('15007')!.clear();
  await Capture.create({ log, run: k.run }).reconcile(['10.244.1.5']);
  t.same(k.rules.filter((r) => r.pref >= 15000 && r.pref <= 15003).map((r) => `${r.pref} ${r.rule}`).sort(), [
    '15000 from all iif rondo-in1 lookup main', '15001 from all iif lo goto 15003', '15002 from all ipproto tcp lookup 15006', '15003 from 169.254.15.6 lookup 15007',
  ]);
  t.ok(k.rules.some((r) => r.pref === 100), 'a rule at another preference stays');
  t.same([...k.routes.get('15007')!], [['default', 'dev rondo-in1 scope link']]);
});

t.test('a duplicated or misplaced jump is repaired', async (t) => {
  const k = fakeKernel();
  await Capture.create({ log, run: k.run }).reconcile([]);
  k.tables.nat!.rules.push('-A PREROUTING -j RONDO-PREROUTING');
  k.tables.nat!.rules.splice(0, 1);
  await Capture.create({ log, run: k.run }).reconcile([]);
  t.same(k.tables.nat!.rules.filter((r) => r.startsWith('-A PREROUTING')), ['-A PREROUTING -j RONDO-PREROUTING', '-A PREROUTING -j LAB-SERVICES']);
});

t.test('remove() deletes the jumps, chains and the set; twice is harmless', async (t) => {
  const k = fakeKernel();
  const cap = Capture.create({ log, run: k.run });
  await cap.reconcile(['10.244.1.5']);
  await cap.remove();
  await cap.remove();
  t.same(k.tables.nat!.rules, ['-A PREROUTING -j LAB-SERVICES']);
  t.notOk(k.tables.nat!.chains.has('RONDO-PREROUTING'));
  t.same(k.tables.filter!.rules, []);
  t.equal(k.set, undefined);
  t.same([...k.links], [], 'the loop pair is gone');
  t.same(k.rules, [], 'and its rules');
  t.same([...(k.routes.get('15006') ?? [])], [], 'and its routes');
});

t.test('remove() also takes what another agent version left (any RONDO-* chain, jump or rondo-* set), and nothing else', async (t) => {
  const k = fakeKernel();
  const lines: string[] = [];
  const cap = Capture.create({ log: createLogger('test', { write: (l: string) => lines.push(l) }, 'info'), run: k.run });
  await cap.reconcile(['10.244.1.5']);
  k.tables.nat!.chains.add('RONDO-OLD-OUTPUT');
  k.tables.nat!.chains.add('KUBE-SVC');
  k.tables.nat!.rules.push('-A OUTPUT -p tcp -j RONDO-OLD-OUTPUT', '-A RONDO-OLD-OUTPUT -j RONDO-PREROUTING', '-A OUTPUT -j KUBE-SVC', '-A OUTPUT -m comment --comment "not RONDO-OLD-OUTPUT" -j ACCEPT');
  k.tables.filter!.rules.push('-A INPUT -m set --match-set kube-set src -j ACCEPT');
  k.otherSets.add('rondo-old-set');
  k.otherSets.add('kube-set');
  await cap.remove();
  t.same(k.tables.nat!.rules, ['-A PREROUTING -j LAB-SERVICES', '-A OUTPUT -j KUBE-SVC', '-A OUTPUT -m comment --comment "not RONDO-OLD-OUTPUT" -j ACCEPT'], 'only jumps to our chains go');
  t.same([...k.tables.nat!.chains].filter((c) => c.startsWith('RONDO-')), []);
  t.ok(k.tables.nat!.chains.has('KUBE-SVC'), 'other chains stay');
  t.same(k.tables.filter!.rules, ['-A INPUT -m set --match-set kube-set src -j ACCEPT'], 'other rules stay');
  t.same([...k.otherSets], ['kube-set'], 'other sets stay');
  t.equal(k.set, undefined);
  t.match(lines.at(-1), /"capture removed".*"chains":\["nat\/RONDO-PREROUTING","nat\/RONDO-OLD-OUTPUT","filter\/RONDO-FORWARD"\],"jumps":3,"sets":\["rondo-enrolled","rondo-old-set"\]/);
  const n = k.calls.length;
  await cap.remove();
  t.same(k.calls.slice(n).filter((c) => c.stdin !== undefined || c.args[0] === 'destroy'), [], 'a second removal changes nothing');
  t.match(lines.at(-1), /capture: nothing to remove/);
});

t.test('table removal: jumps deleted first, chains flushed before any is deleted', (t) => {
  const save = ['*nat', ':PREROUTING ACCEPT [0:0]', ':RONDO-A - [0:0]', ':RONDO-B - [0:0]',
    '-A PREROUTING -j RONDO-A', '-A PREROUTING -p tcp -m comment --comment "x" -g RONDO-B', '-A RONDO-A -j RONDO-B', 'COMMIT'].join('\n');
  const r = parseTableRemoval(save);
  t.same(r, { chains: ['RONDO-A', 'RONDO-B'], jumps: ['-D PREROUTING -j RONDO-A', '-D PREROUTING -p tcp -m comment --comment "x" -g RONDO-B'] });
  t.equal(renderTableRemoval('nat', r), ['*nat', '-D PREROUTING -j RONDO-A', '-D PREROUTING -p tcp -m comment --comment "x" -g RONDO-B',
    '-F RONDO-A', '-F RONDO-B', '-X RONDO-A', '-X RONDO-B', 'COMMIT', ''].join('\n'));
  t.equal(renderTableRemoval('nat', parseTableRemoval('*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT')), '', 'nothing to do: no batch');
  t.end();
});

t.test('without the DNAT guard the filter chain is absent', async (t) => {
  const k = fakeKernel();
  await Capture.create({ log, run: k.run }).reconcile([]);
  await Capture.create({ log, run: k.run, dnatGuard: false }).reconcile([]);
  t.same(k.tables.filter!.rules, []);
});

t.test('a failing command raises CaptureError naming the command and what to check', async (t) => {
  const run: CommandRunner = () => Promise.resolve({ code: 2, stdout: '', stderr: "can't initialize iptables table `nat'" });
  await t.rejects(Capture.create({ log, run }).reconcile(['10.244.1.5']), { code: 'RONDO_E_CAPTURE', message: /ipset -exist restore failed.*CAP_NET_ADMIN/ });
  t.ok(new CaptureError('x') instanceof Error);
});

t.test('dump() lists our rules and set members', async (t) => {
  const k = fakeKernel();
  const cap = Capture.create({ log, run: k.run });
  await cap.reconcile(['10.244.1.5']);
  const d = await cap.dump();
  t.match(d, /-A PREROUTING -j RONDO-PREROUTING/);
  t.match(d, /add rondo-enrolled 10\.244\.1\.5/);
  t.notMatch(d, /LAB-SERVICES/);
});

t.test('pure helpers', (t) => {
  const s = parseChain(':RONDO-PREROUTING - [0:0]\n-A PREROUTING -j X\n-A PREROUTING -j RONDO-PREROUTING\n', 'PREROUTING', 'RONDO-PREROUTING');
  t.same(s, { exists: true, rules: [], jumpPositions: [1] });
  t.notOk(chainInPlace(s, natRules()));
  t.equal(renderChainRestore('nat', 'PREROUTING', 'RONDO-PREROUTING', s, ['-A RONDO-PREROUTING -j RETURN']),
    '*nat\n:RONDO-PREROUTING - [0:0]\n-A RONDO-PREROUTING -j RETURN\n-D PREROUTING -j RONDO-PREROUTING\n-I PREROUTING 1 -j RONDO-PREROUTING\nCOMMIT\n');
  t.equal(renderChainRemoval('nat', 'PREROUTING', 'RONDO-PREROUTING', { exists: false, rules: [], jumpPositions: [] }), '');
  t.same([...parseIpsetSave('create rondo-enrolled hash:ip\nadd rondo-enrolled 10.0.0.1\nadd other 10.0.0.2\n')], ['10.0.0.1']);
  t.equal(renderIpsetRestore(new Set(['a']), new Set(['a'])), 'create rondo-enrolled hash:ip family inet\n');
  t.end();
});
