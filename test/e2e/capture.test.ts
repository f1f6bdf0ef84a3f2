// Capture rules for real: a throwaway node netns with a pod netns and an "outside" netns
// (addresses exist only in namespaces this test creates; no default routes). Checks what
// users depend on: pod traffic reaches 15001, outside traffic to the pod reaches 15006 /
// 15008, node-local traffic is not captured, reconcile is idempotent across restarts,
// pods leave capture at once, the agent being down fails closed, and remove() leaves nothing.
import t from 'tap';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createLogger } from '../../common/log.ts';
import { Capture, spawnRunner, type CommandRunner } from '../../node-agent/capture.ts';

const root = process.getuid?.() === 0;
const haveTools = ['ipset', 'iptables-restore', 'iptables-save'].every((c) => spawnSync('sh', ['-c', `command -v ${c}`]).status === 0);
const id = randomBytes(2).toString('hex');
const N = `rtc-${id}-n`;
const P = `rtc-${id}-p`;
const X = `rtc-${id}-x`;
const POD = '10.244.1.5';
const logLines: string[] = [];
const log = createLogger('test', { write: (l: string) => logLines.push(l) }, 'info');

function sh(...args: string[]): void {
  const r = spawnSync(args[0]!, args.slice(1), { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${args.join(' ')}: ${r.stderr}`);
}
const inN: CommandRunner = (cmd, args, stdin) => spawnRunner('ip', ['netns', 'exec', N, cmd, ...args], stdin);

/** Starts TCP servers in a netns that answer with a tag per port; resolves when listening. */
function servers(ns: string, tags: Record<number, string>): Promise<ChildProcess> {
  const code = `const net=require('net');let n=0;const e=${JSON.stringify(Object.entries(tags))};` +
    `for(const [p,tag] of e) net.createServer((s)=>s.end(tag+'\\n')).listen(+p,'0.0.0.0',()=>{if(++n===e.length)console.log('ready')});`;
  const child = spawn('ip', ['netns', 'exec', ns, process.execPath, '-e', code], { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    child.stdout.once('data', () => resolve(child));
    child.once('exit', (c) => reject(new Error(`server in ${ns} exited ${c}`)));
  });
}

/** Connects from a netns and returns the server's tag, or ERR <code>. */
function probe(ns: string, ip: string, port: number): string {
  const code = `const s=require('net').connect(${port},'${ip}');let d='';s.on('data',b=>d+=b);` +
    `s.on('end',()=>{console.log(d.trim());process.exit(0)});s.on('error',e=>{console.log('ERR '+e.code);process.exit(0)});` +
    `setTimeout(()=>{console.log('TIMEOUT');process.exit(0)},3000)`;
  const r = spawnSync('ip', ['netns', 'exec', ns, process.execPath, '-e', code], { encoding: 'utf8', timeout: 10000 });
  return r.stdout.trim();
}

function cleanup(): void {
  for (const ns of [N, P, X]) spawnSync('ip', ['netns', 'del', ns]);
}

t.test('capture in a node netns', { skip: (!root && 'needs root') || (!haveTools && 'needs ipset and iptables') }, async (t) => {
  const procs: ChildProcess[] = [];
  t.teardown(() => {
    for (const p of procs) p.kill('SIGKILL');
    cleanup();
  });
  for (const ns of [N, P, X]) sh('ip', 'netns', 'add', ns);
  // node <-> pod
  sh('ip', '-n', N, 'link', 'add', `r${id}np`, 'type', 'veth', 'peer', 'name', `r${id}pn`, 'netns', P);
  sh('ip', '-n', N, 'addr', 'add', '10.244.1.1/24', 'dev', `r${id}np`);
  sh('ip', '-n', P, 'addr', 'add', `${POD}/24`, 'dev', `r${id}pn`);
  // node <-> outside (another node, in the lab's terms)
  sh('ip', '-n', N, 'link', 'add', `r${id}nx`, 'type', 'veth', 'peer', 'name', `r${id}xn`, 'netns', X);
  sh('ip', '-n', N, 'addr', 'add', '10.250.0.1/24', 'dev', `r${id}nx`);
  sh('ip', '-n', X, 'addr', 'add', '10.250.0.9/24', 'dev', `r${id}xn`);
  for (const [ns, dev] of [[N, `r${id}np`], [N, `r${id}nx`], [P, `r${id}pn`], [X, `r${id}xn`], [N, 'lo'], [P, 'lo'], [X, 'lo']] as const) {
    sh('ip', '-n', ns, 'link', 'set', dev, 'up');
  }
  sh('ip', '-n', P, 'route', 'add', '10.250.0.0/24', 'via', '10.244.1.1');
  sh('ip', '-n', X, 'route', 'add', '10.244.1.0/24', 'via', '10.250.0.1');
  sh('ip', 'netns', 'exec', N, 'sysctl', '-qw', 'net.ipv4.ip_forward=1');
  procs.push(await servers(P, { 8080: 'pod', 15008: 'pod-15008' }));
  procs.push(await servers(X, { 80: 'outside' }));

  t.equal(probe(X, POD, 8080), 'pod', 'before capture the pod is reached directly');

  const cap = Capture.create({ log, run: inN });
  await cap.reconcile([POD, '10.244.1.6']);
  const first = await cap.dump();
  t.match(first, /-A PREROUTING -j RONDO-PREROUTING/);
  t.match(first, /add rondo-enrolled 10\.244\.1\.5/);

  t.equal(probe(X, POD, 8080), 'ERR ECONNREFUSED', 'agent down: captured traffic is refused (fail closed)');

  const agent = await servers(N, { 15001: 'outbound', 15006: 'inbound', 15008: 'hbone' });
  procs.push(agent);
  t.equal(probe(P, '10.250.0.9', 80), 'outbound', 'pod -> anywhere goes to 15001');
  t.equal(probe(X, POD, 8080), 'inbound', 'outside -> pod goes to 15006');
  t.equal(probe(X, POD, 15008), 'hbone', 'outside -> pod:15008 goes to the HBONE listener');
  t.equal(probe(N, POD, 8080), 'pod', 'node-local (kubelet-style) traffic is not captured');

  const logged = logLines.length;
  await cap.reconcile([POD, '10.244.1.6']);
  t.equal(await cap.dump(), first, 'second reconcile changes nothing');
  await Capture.create({ log, run: inN }).reconcile([POD, '10.244.1.6']);
  t.equal(await cap.dump(), first, 'a restarted agent re-creates nothing');
  t.equal(logLines.length, logged, 'no rules rewritten: the kernel form matches ours exactly');
  const save = spawnSync('ip', ['netns', 'exec', N, 'iptables-save', '-t', 'nat'], { encoding: 'utf8' }).stdout;
  t.equal(save.split('\n').filter((l) => l === '-A PREROUTING -j RONDO-PREROUTING').length, 1, 'one jump');

  const t0 = performance.now();
  await cap.reconcile(['10.244.1.6', '10.244.1.7']);
  const ms = performance.now() - t0;
  t.comment(`reconcile with a set change: ${ms.toFixed(1)} ms`);
  t.ok(ms < 1000, 'pod changes apply within a second');
  t.equal(probe(X, POD, 8080), 'pod', 'a removed pod is no longer captured');
  t.match(await cap.dump(), /add rondo-enrolled 10\.244\.1\.7/);

  await cap.remove();
  const natAfter = spawnSync('ip', ['netns', 'exec', N, 'iptables-save'], { encoding: 'utf8' }).stdout;
  t.notMatch(natAfter, /RONDO/, 'no rule or chain left');
  const sets = spawnSync('ip', ['netns', 'exec', N, 'ipset', 'list', '-n'], { encoding: 'utf8' }).stdout;
  t.equal(sets.trim(), '', 'no set left');
  const links = spawnSync('ip', ['-n', N, '-o', 'link', 'show'], { encoding: 'utf8' }).stdout;
  t.notMatch(links, /rondo-in/, 'no loop link left');
  const rules = spawnSync('ip', ['-n', N, '-4', 'rule', 'show'], { encoding: 'utf8' }).stdout;
  t.notMatch(rules, /^1500[0-3]:/m, 'no loop routing rule left');
  await cap.remove();
});
