// Which top-level part may import which, enforced by eslint (no-restricted-imports).
// The deployables (node-agent, waypoint, controller) share code only through common/; common/
// imports none of them; the lab runs the deployables as processes (by path), never imports
// them; the `rondo` command talks to them over their ports. bench/ and test/ may import anything.

const PARTS = ['common', 'node-agent', 'waypoint', 'controller', 'lab', 'cli', 'bench', 'scripts', 'test'];

/** What each part may not import, and why (the lint message). */
export const FORBIDDEN = {
  common: { parts: ['node-agent', 'waypoint', 'controller', 'lab', 'cli', 'bench', 'scripts', 'test'], why: 'common/ is shared by every deployable and imports none of them' },
  'node-agent': { parts: ['waypoint', 'controller', 'lab', 'cli', 'bench', 'scripts', 'test'], why: 'a deployable imports only common/ (move what both need there)' },
  waypoint: { parts: ['node-agent', 'controller', 'lab', 'cli', 'bench', 'scripts', 'test'], why: 'a deployable imports only common/ (move what both need there)' },
  controller: { parts: ['node-agent', 'waypoint', 'lab', 'cli', 'bench', 'scripts', 'test'], why: 'a deployable imports only common/ (move what both need there)' },
  lab: { parts: ['node-agent', 'waypoint', 'controller', 'cli', 'bench', 'test'], why: 'the lab runs the deployables as processes by path; shared types live in common/' },
  cli: { parts: ['node-agent', 'waypoint', 'controller', 'bench', 'test'], why: 'the rondo command reaches the deployables over their ports; shared code lives in common/' },
};

/** A relative import of a file under `part/` from anywhere in the repository. */
function importOf(part) {
  return `^(\\.\\./)+${part}(/|$)`;
}

/** Flat-config blocks, one per part. */
export const boundaries = Object.entries(FORBIDDEN).map(([part, rule]) => ({
  files: [`${part}/**/*.ts`, `${part}/**/*.js`],
  rules: {
    'no-restricted-imports': ['error', {
      patterns: rule.parts.map((other) => ({ regex: importOf(other), message: `${part}/ may not import ${other}/: ${rule.why}.` })),
    }],
  },
}));

export { PARTS };
