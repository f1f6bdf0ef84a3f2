import t from 'tap';
import { createLogger } from '../../common/log.ts';

t.test('writes one JSON object per line with component and fields', (t) => {
  const lines: string[] = [];
  const log = createLogger('agent', { write: (l: string) => lines.push(l) }, 'info');
  log.info('hello', { port: 15001 });
  log.debug('hidden');
  log.child('outbound').error('boom', { err: Object.assign(new Error('bad'), { code: 'X' }) });
  t.equal(lines.length, 2);
  const a = JSON.parse(lines[0]!) as Record<string, unknown>;
  t.match(a, { level: 'info', component: 'agent', msg: 'hello', port: 15001 });
  const b = JSON.parse(lines[1]!) as Record<string, unknown>;
  t.match(b, { level: 'error', component: 'agent.outbound', err: { message: 'bad', code: 'X' } });
  t.end();
});
