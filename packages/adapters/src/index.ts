/**
 * `@slmkit/adapters`.
 *
 * @packageDocumentation
 */
export {};
