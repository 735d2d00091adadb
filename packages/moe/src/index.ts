/**
 * `@slmkit/moe`.
 *
 * @packageDocumentation
 */
export {};
