// Profiling/benchmark knobs of the agent command line: extra Node flags and agent flags from the environment.
import t from 'tap';
import { agentArgv, controllerArgv, AGENT_NODE_FLAGS } from '../../lab/mesh.ts';
import { parseLabSpec } from '../../lab/spec.ts';
import { planLab } from '../../lab/plan.ts';

t.test('RONDO_AGENT_NODE_OPTIONS and RONDO_AGENT_ARGS reach the node agent command line', (t) => {
  const plan = planLab(parseLabSpec('apiVersion: lab.rondo.dev/v1\nkind: Lab\nmetadata: { name: m1 }\nspec: { nodes: 1 }\n', 'm.yaml'));
  const o = { node: 'node', repo: '/r', runDir: '/run/x', plan, nodeName: 'node-1', tokenFile: '/t' };
  const argv = agentArgv(o, { RONDO_AGENT_NODE_OPTIONS: ' --cpu-prof  --cpu-prof-dir=/tmp/p ', RONDO_AGENT_ARGS: '--workers 1' });
  t.same(argv.slice(0, 4 + AGENT_NODE_FLAGS.length), ['node', ...AGENT_NODE_FLAGS, '--cpu-prof', '--cpu-prof-dir=/tmp/p', '/r/node-agent/main.ts'], 'Node flags go before the script, after the defaults');
  t.same(argv.slice(-2), ['--workers', '1'], 'agent flags go last');
  t.same(agentArgv(o, {}).slice(0, 2 + AGENT_NODE_FLAGS.length), ['node', ...AGENT_NODE_FLAGS, '/r/node-agent/main.ts'], 'only the defaults without the variables');
  t.end();
});

t.test('RONDO_CONTROLLER_ARGS reaches the controller command line, last', (t) => {
  const plan = planLab(parseLabSpec('apiVersion: lab.rondo.dev/v1\nkind: Lab\nmetadata: { name: m1 }\nspec: { nodes: 1 }\n', 'm.yaml'));
  const o = { node: 'node', repo: '/r', stateDir: '/s', runDir: '/run/x', plan };
  t.same(controllerArgv(o, { RONDO_CONTROLLER_ARGS: ' --debug-unchecked-trust-bundle-file  /x.pem ' }).slice(-2), ['--debug-unchecked-trust-bundle-file', '/x.pem']);
  t.equal(controllerArgv(o, {}).at(-1), '/run/x/tokens.json', 'nothing added without it');
  t.end();
});

t.test('RONDO_MESH_DIST runs the compiled build of the controller and the agents', (t) => {
  const plan = planLab(parseLabSpec('apiVersion: lab.rondo.dev/v1\nkind: Lab\nmetadata: { name: m1 }\nspec: { nodes: 1 }\n', 'm.yaml'));
  const env = { RONDO_MESH_DIST: '/r/bench/results/tmp/dist' };
  const agent = agentArgv({ node: 'node', repo: '/r', runDir: '/run/x', plan, nodeName: 'node-1', tokenFile: '/t' }, env);
  t.equal(agent[1 + AGENT_NODE_FLAGS.length], '/r/bench/results/tmp/dist/node-agent/main.js');
  t.equal(controllerArgv({ node: 'node', repo: '/r', stateDir: '/s', runDir: '/run/x', plan }, env)[1], '/r/bench/results/tmp/dist/controller/main.js');
  t.equal(controllerArgv({ node: 'node', repo: '/r', stateDir: '/s', runDir: '/run/x', plan }, { RONDO_MESH_DIST: '' })[1], '/r/controller/main.ts', 'empty means the sources');
  t.end();
});
