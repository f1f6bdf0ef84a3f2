/** Reading the files a flag names, with an error that says which flag and file. */
import { readFileSync } from 'node:fs';
import { RondoError, errorMessage } from './errors.ts';

/** The text of `path`; RONDO_E_CONFIG naming `what` (e.g. "token file (--token-file)") when unreadable. */
export function readRequired(path: string, what: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (e) {
    throw new RondoError('RONDO_E_CONFIG', `cannot read ${what} ${path}: ${errorMessage(e)}`, { cause: e });
  }
}
