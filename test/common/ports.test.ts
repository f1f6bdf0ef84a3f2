// The well-known ports are defined once (common/ports.ts); the documented table must agree.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { PORTS } from '../../common/ports.ts';
import { parseAgentFlags } from '../../node-agent/flags.ts';
import { parseControllerFlags } from '../../controller/flags.ts';
import { CAPTURE_PORTS } from '../../node-agent/capture.ts';
import { DEFAULT_PORTS } from '../../node-agent/dataplane.ts';

t.test('every port is distinct and listed in docs/architecture.md', (t) => {
  const values = Object.values(PORTS);
  t.equal(new Set(values).size, values.length, 'no port used for two things');
  const doc = readFileSync(new URL('../../docs/architecture.md', import.meta.url), 'utf8');
  const table = doc.slice(doc.indexOf('## Ports'), doc.indexOf('##', doc.indexOf('## Ports') + 3));
  const documented = [...table.matchAll(/^\| (\d{5}) \|/gm)].map((m) => Number(m[1])).sort();
  t.same(documented, [...values].sort(), 'the port table documents exactly these ports');
  t.end();
});

t.test('the agent listens and captures on the well-known ports by default', (t) => {
  t.same(CAPTURE_PORTS, { outbound: PORTS.outboundCapture, inbound: PORTS.inboundCapture, hbone: PORTS.hbone });
  t.same(DEFAULT_PORTS, CAPTURE_PORTS, 'listeners are where the capture rules redirect to');
  t.end();
});

t.test('flag defaults are the well-known ports', (t) => {
  const agent = parseAgentFlags(['--node', 'n1', '--controller', `10.0.0.2:${PORTS.controllerPush}`, '--token-file', 't', '--ca-file', 'c']);
  t.match(agent, { adminPort: PORTS.proxyAdmin, metricsPort: PORTS.proxyHealth });
  const ctl = parseControllerFlags(['--files', 'd', '--listen', '10.0.0.2', '--ca-dir', 'ca', '--tokens', 'tk']);
  t.match(ctl, { pushPort: PORTS.controllerPush, metricsPort: PORTS.controllerHttp });
  t.end();
});
