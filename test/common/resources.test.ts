import t from 'tap';
import { keyOf, selectorMatches } from '../../common/resources.ts';

t.test('selectorMatches: subset semantics', (t) => {
  t.ok(selectorMatches(undefined, {}));
  t.ok(selectorMatches({ app: 'a' }, { app: 'a', version: 'v1' }));
  t.notOk(selectorMatches({ app: 'a', tier: 'x' }, { app: 'a' }));
  t.end();
});

t.test('keyOf: namespace/name', (t) => {
  t.equal(keyOf({ namespace: 'demo', name: 'web' }), 'demo/web');
  t.end();
});
