import t from 'tap';
import { EndpointPicker, endpointKey } from '../../common/endpoint-picker.ts';

const keys = ['10.0.0.1:80', '10.0.0.2:80', '10.0.0.3:80', '10.0.0.4:80'];

t.test('no candidates: -1; one candidate: always it', (t) => {
  const lb = new EndpointPicker();
  t.equal(lb.pick('s', []), -1);
  t.equal(lb.pick('s', ['a']), 0);
  t.end();
});

t.test('idle endpoints are used in round robin, per pool', (t) => {
  const lb = new EndpointPicker();
  t.same([0, 1, 2, 3, 4].map(() => lb.pick('a', keys)), [0, 1, 2, 3, 0]);
  t.equal(lb.pick('b', keys), 0, 'another pool has its own cursor');
  t.end();
});

t.test('least connections: new connections avoid a busy endpoint', (t) => {
  const lb = new EndpointPicker(); // real randomness: the property must hold for any draw
  for (let i = 0; i < 500; i++) lb.acquire(keys[0]!);
  const counts = [0, 0, 0, 0];
  for (let i = 0; i < 300; i++) {
    const k = lb.pick('s', keys);
    counts[k]!++;
    lb.acquire(keys[k]!);
  }
  t.equal(counts[0], 0, 'the loaded endpoint never wins a comparison');
  for (const c of counts.slice(1)) t.ok(c > 70 && c < 130, `spread evenly over the rest: ${counts.join(',')}`);
  t.end();
});

t.test('P2C compares two distinct endpoints', (t) => {
  // random() = 0.99 draws the last index twice; the second draw must skip to another one.
  const lb = new EndpointPicker({ random: () => 0.99 });
  lb.acquire(keys[3]!);
  t.equal(lb.pick('s', keys), 2, 'last (busy) vs its distinct neighbour: the idle one wins');
  t.end();
});

t.test('release lowers counts, never below zero, and forgets idle targets', (t) => {
  const lb = new EndpointPicker();
  lb.acquire('x');
  lb.acquire('x');
  lb.release('x');
  t.equal(lb.active('x'), 1);
  lb.release('x');
  lb.release('x');
  t.equal(lb.active('x'), 0);
  lb.acquire('x');
  t.equal(lb.active('x'), 1, 'a stray release did not leave a negative count');
  t.end();
});

t.test('retainPools drops cursors of removed services', (t) => {
  const lb = new EndpointPicker();
  lb.pick('gone', keys);
  lb.pick('kept', keys);
  lb.retainPools(new Set(['kept']));
  t.equal(lb.pick('gone', keys), 0, 'cursor restarted');
  t.equal(lb.pick('kept', keys), 1);
  t.end();
});

t.test('endpointKey brackets IPv6', (t) => {
  t.equal(endpointKey('10.0.0.1', 80), '10.0.0.1:80');
  t.equal(endpointKey('fd00::1', 80), '[fd00::1]:80');
  t.end();
});

t.test('eligibility: excluded endpoints get no new traffic, idle or not', (t) => {
  const ejected = new Set([keys[1]!, keys[3]!]);
  const lb = new EndpointPicker({ eligible: (k) => !ejected.has(k) });
  t.same([0, 1, 2, 3].map(() => keys[lb.pick('s', keys)]), [keys[0], keys[2], keys[0], keys[2]], 'round robin over the eligible ones');
  lb.acquire(keys[0]!);
  for (let i = 0; i < 20; i++) t.equal(lb.pick('s', keys), 2, 'P2C among the eligible ones: the idle eligible endpoint');
  ejected.delete(keys[3]!);
  lb.acquire(keys[2]!);
  lb.acquire(keys[2]!);
  const seen = new Set<number>();
  for (let i = 0; i < 50; i++) seen.add(lb.pick('s', keys));
  t.same([...seen].sort(), [0, 3], 'an endpoint back from ejection is chosen again; the busier one is not');
  t.end();
});

t.test('eligibility: when every endpoint is excluded, all of them are candidates (panic, as Envoy)', (t) => {
  const lb = new EndpointPicker({ eligible: () => false });
  t.same([0, 1, 2, 3].map(() => lb.pick('s', keys)), [0, 1, 2, 3]);
  t.equal(lb.pick('s', []), -1);
  t.end();
});

t.test('requests in flight count as load alongside connections', (t) => {
  const lb = new EndpointPicker({ random: () => 0 });
  // random 0: P2C compares index 0 with index 1.
  const finish = lb.startRequest(keys[0]!);
  t.equal(lb.inFlight(keys[0]!), 1);
  t.equal(lb.load(keys[0]!), 1);
  t.equal(lb.pick('s', keys.slice(0, 2)), 1, 'a request in flight makes endpoint 0 the busier one');
  lb.acquire(keys[1]!);
  lb.acquire(keys[1]!);
  t.equal(lb.load(keys[1]!), 2);
  t.equal(lb.pick('s', keys.slice(0, 2)), 0, 'two connections weigh more than one request');
  finish();
  finish();
  t.equal(lb.inFlight(keys[0]!), 0, 'finish is once-only');
  t.equal(lb.active(keys[1]!), 2, 'connections are counted apart from requests');
  t.end();
});
