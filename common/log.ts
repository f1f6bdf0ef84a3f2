/** Structured JSON logging: one object per line on stderr, with a component name. */

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
const LEVELS: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
  child(component: string): Logger;
}

export interface LogSink {
  write(line: string): unknown;
}

/** Creates a logger writing JSON lines; level from RONDO_LOG_LEVEL (default info). */
export function createLogger(
  component: string,
  sink: LogSink = process.stderr,
  level: LogLevel = (process.env['RONDO_LOG_LEVEL'] as LogLevel | undefined) ?? 'info',
): Logger {
  const min = LEVELS[level] ?? LEVELS.info;
  const emit = (lvl: LogLevel, msg: string, fields?: Record<string, unknown>): void => {
    if (LEVELS[lvl] < min) return;
    const rec: Record<string, unknown> = { time: new Date().toISOString(), level: lvl, component, msg };
    if (fields !== undefined) {
      for (const [k, v] of Object.entries(fields)) rec[k] = v instanceof Error ? errorFields(v) : v;
    }
    sink.write(JSON.stringify(rec) + '\n');
  };
  return {
    debug: (m, f) => emit('debug', m, f),
    info: (m, f) => emit('info', m, f),
    warn: (m, f) => emit('warn', m, f),
    error: (m, f) => emit('error', m, f),
    child: (c) => createLogger(`${component}.${c}`, sink, level),
  };
}

function errorFields(e: Error): Record<string, unknown> {
  const code = (e as { code?: unknown }).code;
  return { message: e.message, ...(code !== undefined ? { code } : {}) };
}
