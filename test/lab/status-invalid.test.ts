import t from 'tap';
import { formatStatus } from '../../lab/cli.ts';

t.test('lab status lists the resources the controller left out as invalid, with the reason', (t) => {
  const base = { name: 'rl1', runDir: '/run/rondo/rl1', nodes: [], pods: [], services: [], mesh: [] };
  const text = formatStatus({ ...base, invalid: [{ kind: 'AuthorizationPolicy', namespace: 'demo', name: 'bad', reason: 'spec.action: invalid option' }] });
  t.match(text, /INVALID RESOURCES/);
  t.match(text, /AuthorizationPolicy demo\/bad: spec\.action: invalid option/);
  t.notMatch(formatStatus({ ...base, invalid: [] }), /INVALID/, 'nothing printed when all is valid');
  t.end();
});
