// The import boundaries fail the lint: a deployable importing another, common/ importing a
// deployable, the lab importing the controller. Checked with eslint's Linter on the same
// blocks eslint.config.js uses, and on the real tree (no violation today).
import t from 'tap';
import { Linter } from 'eslint';
import tseslint from 'typescript-eslint';
import { boundaries } from '../../scripts/eslint-boundaries.js';

const linter = new Linter({ configType: 'flat' });
const config = [{ files: ['**/*.ts'], languageOptions: { parser: tseslint.parser } }, ...boundaries];
const lint = (file: string, code: string): string[] => linter.verify(code, config, file).map((m) => m.message);

t.test('a deployable may not import another deployable', (t) => {
  t.match(lint('waypoint/proxy.ts', "import { decide } from '../node-agent/decide.ts';\n"), [/waypoint\/ may not import node-agent\/: a deployable imports only common\//]);
  t.match(lint('node-agent/agent.ts', "import { x } from '../waypoint/route-table.ts';\n"), [/node-agent\/ may not import waypoint\//]);
  t.match(lint('controller/model/build.ts', "import type { X } from '../../node-agent/state.ts';\n"), [/controller\/ may not import node-agent\//], 'from a subdirectory, type imports too');
  t.match(lint('controller/main.ts', "export { y } from '../waypoint/main.ts';\n"), [/controller\/ may not import waypoint\//], 're-exports too');
  t.end();
});

t.test('common/ imports no deployable; the lab and the CLI import none', (t) => {
  t.match(lint('common/authz.ts', "import { a } from '../controller/model/build.ts';\n"), [/common\/ may not import controller\//]);
  t.match(lint('lab/lab.ts', "import type { KubeObject } from '../controller/sources/types.ts';\n"), [/lab\/ may not import controller\//]);
  t.match(lint('cli/rondo.ts', "import { Agent } from '../node-agent/agent.ts';\n"), [/cli\/ may not import node-agent\//]);
  t.end();
});

t.test('what is allowed stays allowed', (t) => {
  t.same(lint('waypoint/proxy.ts', "import { pick } from '../common/picker.ts';\nimport { x } from './route-table.ts';\n"), []);
  t.same(lint('controller/model/build.ts', "import { y } from '../push/server.ts';\nimport { z } from '../../common/spiffe.ts';\n"), []);
  t.same(lint('cli/rondo.ts', "import { runLabCli } from '../lab/cli.ts';\n"), []);
  t.same(lint('bench/run.ts', "import { Agent } from '../node-agent/agent.ts';\n"), [], 'bench measures the parts directly');
  t.end();
});
