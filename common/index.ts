export { createLogger } from './log.ts';
export type { Logger, LogLevel, LogSink } from './log.ts';
export { RondoError, InvalidInputError, errorMessage } from './errors.ts';
