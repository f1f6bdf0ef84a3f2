/** Errors with a stable code (`RONDO_E_…`) and a message that says what to check. */
export class RondoError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'RondoError';
    this.code = code;
  }
}

/** A configuration or resource that does not validate; names the field at fault. */
export class InvalidInputError extends RondoError {
  constructor(message: string, options?: ErrorOptions) {
    super('RONDO_E_INVALID', message, options);
    this.name = 'InvalidInputError';
  }
}

/** Returns the message of anything thrown. */
export function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
