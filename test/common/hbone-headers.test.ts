import t from 'tap';
import { parseAuthority, formatAuthority, buildBaggage, newTraceparent, BadAuthorityError } from '../../common/hbone-headers.ts';

t.test('authorities: ip:port accepted, everything else refused with a reason', (t) => {
  t.same(parseAuthority('10.244.1.5:8080'), { ip: '10.244.1.5', port: 8080 });
  t.same(parseAuthority('[fd00::5]:443'), { ip: 'fd00::5', port: 443 });
  for (const bad of ['', 'x'.repeat(65), 'svc.ns:80', '10.0.0.1', '10.0.0.1:0', '10.0.0.1:65536', '10.0.0.1:-1', '10.0.0.1: 80',
    '[fd00::5]443', '[10.0.0.1]:80', 'fd00::5:80', '[fd00::5:80', '10.0.0.256:80']) {
    t.throws(() => parseAuthority(bad), BadAuthorityError, JSON.stringify(bad));
  }
  t.equal(formatAuthority('fd00::5', 443), '[fd00::5]:443');
  t.equal(formatAuthority('10.0.0.1', 80), '10.0.0.1:80');
  t.end();
});

t.test('baggage carries the source workload, omitting empty fields', (t) => {
  t.equal(buildBaggage({ namespace: 'demo', name: 'web-1', workloadName: 'web', app: 'web', version: 'v1' }),
    'k8s.namespace.name=demo,k8s.pod.name=web-1,k8s.deployment.name=web,service.name=web,service.version=v1');
  t.equal(buildBaggage({ namespace: 'demo', name: 'a b' }), 'k8s.namespace.name=demo,k8s.pod.name=a%20b');
  t.match(newTraceparent(), /^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
  t.end();
});
