// Types of eslint-boundaries.js (plain JS: eslint.config.js loads it without a TypeScript step).
import type { Linter } from 'eslint';

export declare const PARTS: string[];
export declare const FORBIDDEN: Record<string, { parts: string[]; why: string }>;
export declare const boundaries: Linter.Config[];
