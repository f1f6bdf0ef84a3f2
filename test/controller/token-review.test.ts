import t from 'tap';
import type { Test } from 'tap';
import { TokenReviewAuthenticator, kubernetesReviewer, firstOf } from '../../controller/push/token-review.ts';
import { TokenFileAuthenticator } from '../../controller/push/auth.ts';
import { KubeApiDouble } from '../helpers/kube-api-double.ts';

async function setup(t: Test) {
  const api = await KubeApiDouble.create();
  t.teardown(() => api.close());
  api.addServiceAccountToken('agent-on-node-2', { namespace: 'rondo-system', name: 'rondo-node-agent', node: 'node-2', audiences: ['rondo'] });
  api.addServiceAccountToken('agent-unbound', { namespace: 'rondo-system', name: 'rondo-node-agent', audiences: ['rondo'] });
  api.addServiceAccountToken('agent-default-aud', { namespace: 'rondo-system', name: 'rondo-node-agent', node: 'node-2' });
  api.addServiceAccountToken('wp-token', { namespace: 'demo', name: 'wp', node: 'node-1', audiences: ['rondo'] });
  api.addServiceAccountToken('app-token', { namespace: 'demo', name: 'web', node: 'node-1', audiences: ['rondo'] });
  let now = 0;
  const auth = new TokenReviewAuthenticator({
    review: kubernetesReviewer(api.kubeConfig()),
    isWaypoint: (ns, name) => ns === 'demo' && name === 'wp',
    now: () => now, cacheMs: 1000,
  });
  return { api, auth, tick: (ms: number): void => { now += ms; } };
}

const req = (token: string | undefined) => ({ token, remoteAddress: '10.250.0.12:40000' });

t.test('a node agent is the rondo-node-agent ServiceAccount on the node its token is bound to; a waypoint is its Gateway\'s ServiceAccount', async (t) => {
  const { api, auth } = await setup(t);
  t.same(await auth.authenticate(req('agent-on-node-2')), { kind: 'node-agent', node: 'node-2' });
  t.same(await auth.authenticate(req('wp-token')), { kind: 'waypoint', namespace: 'demo', name: 'wp' });
  const review = api.requests.find((r) => r.path === '/apis/authentication.k8s.io/v1/tokenreviews');
  t.equal(review?.method, 'POST');
  t.match(review?.body, { kind: 'TokenReview', spec: { token: 'agent-on-node-2', audiences: ['rondo'] } }, 'asks for the rondo audience');
});

t.test('refusals name the problem: unknown token, wrong audience, unbound token, other ServiceAccount, no token', async (t) => {
  const { auth } = await setup(t);
  await t.rejects(auth.authenticate(req('nope')), { code: 'RONDO_E_AUTH', message: /rejected by the API server: .*invalid bearer token/ });
  await t.rejects(auth.authenticate(req('agent-default-aud')), { message: /invalid for the target audiences/ });
  await t.rejects(auth.authenticate(req('agent-unbound')), { message: /names no node .*node-name/ });
  await t.rejects(auth.authenticate(req('app-token')), { message: /ServiceAccount demo\/web .* neither the node agent's/ });
  await t.rejects(auth.authenticate(req(undefined)), { message: /no bearer token/ });
});

t.test('a positive review is reused for a while (one TokenReview per proxy in a reconnect storm), then asked again', async (t) => {
  const { api, auth, tick } = await setup(t);
  const count = (): number => api.requests.filter((r) => r.path.endsWith('/tokenreviews')).length;
  await auth.authenticate(req('agent-on-node-2'));
  await auth.authenticate(req('agent-on-node-2'));
  t.equal(count(), 1);
  tick(1001);
  await auth.authenticate(req('agent-on-node-2'));
  t.equal(count(), 2);
});

t.test('an unreachable API server is an authentication failure that says what to check', async (t) => {
  const { api, auth } = await setup(t);
  await api.close();
  await t.rejects(auth.authenticate(req('agent-on-node-2')), { code: 'RONDO_E_AUTH', message: /cannot review the token .*create tokenreviews/ });
});

t.test('firstOf: bootstrap tokens first, then TokenReview', async (t) => {
  const { auth } = await setup(t);
  const both = firstOf(new TokenFileAuthenticator({ 'bootstrap-token-0123456789': { kind: 'node-agent', node: 'node-9' } }), auth);
  t.same(await both.authenticate(req('bootstrap-token-0123456789')), { kind: 'node-agent', node: 'node-9' });
  t.same(await both.authenticate(req('agent-on-node-2')), { kind: 'node-agent', node: 'node-2' });
  await t.rejects(both.authenticate(req('nope')), { message: /invalid bearer token/ });
});
