/**
 * `@slmkit/hybrid`.
 *
 * @packageDocumentation
 */
export {};
