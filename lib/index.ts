// Public API of the soco-train package.
export * as torch from './torch';
