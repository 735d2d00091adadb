/**
 * Speculative decoding (Leviathan, Kalman & Matias, "Fast Inference from Transformers via Speculative Decoding",
 * ICML 2023): a small draft model proposes `k` tokens one at a time, the target scores all of them in one forward,
 * and the longest prefix the target agrees with is kept, plus one token from the target itself. Greedy output is
 * exactly the target's greedy output; sampled output has exactly the target's distribution.
 *
 * Rolling back the rejected positions: a cache that can drop positions (`canTruncate` / `truncate`: KV caches, and
 * sliding-window caches until they evict what the rollback needs) is truncated. One that cannot (an SSM state, a
 * sliding window that has evicted) is cloned before the step; on a rejection the clone replaces it and the tokens
 * it has not seen (the accepted ones) are fed again at the front of the next forward. That costs no extra forward
 * call, only `j + 1` more positions in the next one (j: the accepted drafts), and one clone per step (on `wasm`
 * a copy of the state, on `webgpu` and `cpu` a new handle on the same storage).
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { ConfigError } from '@slmkit/core';
import type { GenerativeLM, GenerateStep } from '../generate.js';
import { argmax, processLogits, sampleFromProbabilities, softmax, type Rng, type SamplingOptions } from './sampling.js';

/**
 * What speculative decoding needs of a decoding state: its length, a clone, and rolling back to fewer positions
 * where that is possible. `ModelCache`, `MambaCache` and `HybridCache` all fit.
 *
 * @example
 * ```ts
 * import { ModelCache, type SpeculativeCache } from '@slmkit/models';
 * const cache: SpeculativeCache = ModelCache.forWindows([null, null]);
 * console.log(cache.length, cache.canTruncate(0)); // 0 true
 * cache.dispose();
 * ```
 */
export interface SpeculativeCache {
  /** Positions seen so far. */
  readonly length: number;
  /** An independent copy. */
  clone(): SpeculativeCache;
  /** Whether `truncate(length)` is possible now, or after `appended` more positions. */
  canTruncate(length: number, appended?: number): boolean;
  /** Rolls back to the state after the first `length` positions. */
  truncate(length: number): void;
  /** Frees the state's tensors. */
  dispose(): void;
}

/**
 * A model that can take part in speculative decoding, as target or draft: a {@link GenerativeLM} whose cache is a
 * {@link SpeculativeCache} and whose `forward` returns the logits of every position (the target scores all the
 * drafted tokens in one call). `CausalLM`, `MambaLM`, `Mamba2LM` and `HybridLM` all fit.
 *
 * @example
 * ```ts
 * import { MambaLM, mambaConfigFromHF, type SpeculativeLM } from '@slmkit/models';
 * const draft: SpeculativeLM = new MambaLM(mambaConfigFromHF({ model_type: 'mamba', vocab_size: 64, hidden_size: 16, num_hidden_layers: 1, state_size: 4 }));
 * console.log(draft.config.vocabSize); // 64
 * ```
 */
export interface SpeculativeLM extends GenerativeLM<SpeculativeCache> {
  /** The logits `[B, T, vocab]` of every position of `ids`, reading and extending `cache`. */
  forward(ids: tf.Tensor2D, options?: { cache?: SpeculativeCache }): tf.Tensor3D;
  /** The logits `[B, vocab]` of the last position of each row, reading and extending `cache`. */
  forwardLast(ids: tf.Tensor2D, options?: { cache?: SpeculativeCache }): tf.Tensor2D;
}

/**
 * How speculative decoding went, in {@link GenerateOutput.speculative}.
 *
 * @example
 * ```ts
 * import type { SpeculativeStats } from '@slmkit/models';
 * const show = (s: SpeculativeStats): string =>
 *   `${(100 * s.acceptanceRate).toFixed(0)}% of drafts accepted, ${s.tokensPerTargetForward.toFixed(2)} tokens per target forward`;
 * ```
 */
export interface SpeculativeStats {
  /** Draft tokens proposed. */
  proposed: number;
  /** Draft tokens the target accepted. */
  accepted: number;
  /** `accepted / proposed` (0 when nothing was proposed). */
  acceptanceRate: number;
  /** Forward calls of the target, the prefill included. */
  targetForwards: number;
  /** Forward calls of the draft. */
  draftForwards: number;
  /** New tokens per target forward call (plain decoding: 1). */
  tokensPerTargetForward: number;
}

function fail(field: string, expected: string, found: unknown): never {
  throw new ConfigError(`acceptDraft: ${field} must be ${expected}, found ${String(found)}`, { field, expected, found });
}

/**
 * The verification step of speculative decoding, on the host: given the target's and the draft's (processed)
 * logits at each drafted position, how many drafted tokens to keep and which token follows them.
 *
 * - Greedy (no `rng`): keep drafts while each equals the target's argmax at its position; the next token is the
 *   target's argmax at the first disagreement, or after the last draft when all agree.
 * - Sampling (Leviathan et al. 2023, algorithm 1): with `p` and `q` the target's and the draft's softmax, keep the
 *   draft `x` with probability `min(1, p(x) / q(x))`; at the first rejection draw the next token from
 *   `max(0, p − q)` normalised; when all are kept, draw a bonus token from the target's last row. The output then
 *   has exactly the target's distribution, whatever the draft.
 *
 * @param target - `k + 1` rows `[V]`: the target's logits for the position of each draft, then the one after.
 * @param draft - `k` rows `[V]`: the draft's logits each draft was chosen from (sampled from its softmax).
 * @param drafted - the `k` drafted tokens.
 * @param rng - the random stream when sampling; absent for greedy decoding.
 * @returns `accepted` (0..k) and `next`, the token that follows the accepted drafts.
 * @throws {@link @slmkit/core!ConfigError | ConfigError} when the row counts do not fit `drafted`.
 *
 * @example
 * ```ts
 * import { acceptDraft } from '@slmkit/models';
 * const row = (...l: number[]) => new Float32Array(l);
 * // The target agrees with the first draft (token 1), not the second (it prefers 0 over 2).
 * const out = acceptDraft([row(0, 5, 1), row(4, 0, 1), row(0, 0, 9)], [row(0, 3, 0), row(0, 0, 3)], [1, 2]);
 * console.log(out); // { accepted: 1, next: 0 }
 * ```
 */
export function acceptDraft(
  target: readonly Float32Array[],
  draft: readonly Float32Array[],
  drafted: readonly number[],
  rng?: Rng,
): { accepted: number; next: number } {
  const k = drafted.length;
  if (!Array.isArray(target) || target.length !== k + 1) fail('target', `${k + 1} rows (one per draft, plus one)`, Array.isArray(target) ? target.length : typeof target);
  if (!Array.isArray(draft) || draft.length !== k) fail('draft', `${k} rows (one per draft)`, Array.isArray(draft) ? draft.length : typeof draft);
  for (let i = 0; i < k; i++) {
    const x = drafted[i];
    if (rng == null) {
      if (argmax(target[i]) !== x) return { accepted: i, next: argmax(target[i]) };
      continue;
    }
    const p = softmax(target[i]);
    const q = softmax(draft[i]);
    // q(x) = 0 cannot happen for a token the draft drew; if it does, the ratio is infinite: keep it.
    if (q[x] <= 0 || rng.next() * q[x] < p[x]) continue;
    const residual = p.map((pv, v) => Math.max(0, pv - q[v]));
    // Rounding can leave no positive residual when p and q nearly agree; p itself is then the right law.
    const next = residual.some((r) => r > 0) ? sampleFromProbabilities(residual, rng) : sampleFromProbabilities(p, rng);
    return { accepted: i, next };
  }
  const last = target[k];
  return { accepted: k, next: rng == null ? argmax(last) : sampleFromProbabilities(softmax(last), rng) };
}

/** Everything {@link speculativeDecode} needs; validated by `generate`. */
export interface SpeculativeRun {
  target: SpeculativeLM;
  draft: SpeculativeLM;
  /** The prompt of the single row. */
  prompt: number[];
  maxNewTokens: number;
  numDraftTokens: number;
  sampling: SamplingOptions;
  greedy: boolean;
  rng: Rng;
  stops: ReadonlySet<number>;
  onToken?: (step: GenerateStep) => void | boolean;
  returnLogits: boolean;
}

/** The logits of every position of `ids` from `offset` on, as one Float32Array per position (`[V]` each). */
async function rowsFrom(model: SpeculativeLM, ids: number[], cache: SpeculativeCache, offset: number, lastOnly: boolean): Promise<Float32Array[]> {
  const V = model.config.vocabSize;
  const logits = tf.tidy(() => {
    const input = tf.tensor2d([ids], [1, ids.length], 'int32'); // [1, T]
    if (lastOnly) return model.forwardLast(input, { cache }); // [1, V]
    const all = model.forward(input, { cache }); // [1, T, V]
    return tf.slice(all, [0, offset, 0], [1, ids.length - offset, V]); // [1, T − offset, V]
  });
  const data = (await logits.data()) as Float32Array;
  logits.dispose();
  return Array.from({ length: data.length / V }, (_, i) => data.slice(i * V, (i + 1) * V));
}

/**
 * The speculative decoding loop behind `generate(ids, { draft })` for one row. Each round: the draft proposes up to
 * `numDraftTokens` tokens (one forward each), the target scores them in one forward, {@link acceptDraft} keeps a
 * prefix and adds one token, and both caches roll back to what they should have seen. The first token comes from
 * the target's prefill alone. Every tensor it makes, the caches included, is freed.
 */
export async function speculativeDecode(run: SpeculativeRun): Promise<{
  tokens: number[];
  reason: 'stop' | 'length' | 'cancelled';
  stepLogits: Float32Array[];
  stats: SpeculativeStats;
}> {
  const { target, draft, maxNewTokens, numDraftTokens, sampling, greedy, rng, stops, onToken, returnLogits } = run;
  const history = run.prompt.slice();
  const tokens: number[] = [];
  const stepLogits: Float32Array[] = [];
  const stats: SpeculativeStats = { proposed: 0, accepted: 0, acceptanceRate: 0, targetForwards: 0, draftForwards: 0, tokensPerTargetForward: 0 };
  let reason: 'stop' | 'length' | 'cancelled' | null = null;

  /** Records one new token; false once the generation is over. */
  const emit = (id: number, logits: Float32Array): boolean => {
    tokens.push(id);
    history.push(id);
    if (returnLogits) stepLogits.push(logits);
    if (stops.has(id)) reason = 'stop';
    if (onToken?.({ step: tokens.length - 1, tokens: [id] }) === false) reason ??= 'cancelled';
    if (tokens.length === maxNewTokens) reason ??= 'length';
    return reason == null;
  };
  const choose = (row: Float32Array, previous: number[]): { id: number; processed: Float32Array } => {
    const processed = processLogits(row, sampling, previous);
    return { id: greedy ? argmax(processed) : sampleFromProbabilities(softmax(processed), rng), processed };
  };

  let targetCache = target.createCache();
  let draftCache: SpeculativeCache | null = null;
  const snapshots: SpeculativeCache[] = [];
  try {
    draftCache = draft.createCache();
    for (const [role, cache] of [['target', targetCache], ['draft', draftCache]] as const) {
      if (!['clone', 'canTruncate', 'truncate'].every((f) => typeof (cache as unknown as Record<string, unknown>)[f] === 'function')) {
        throw new ConfigError(`generate: the ${role}'s cache must have clone, canTruncate and truncate for speculative decoding`, {
          field: 'draft',
          expected: 'a SpeculativeCache (ModelCache, MambaCache, HybridCache)',
          found: cache?.constructor?.name ?? typeof cache,
        });
      }
    }
    const [first] = await rowsFrom(target, run.prompt, targetCache, 0, true);
    stats.targetForwards++;
    emit(choose(first, history).id, first);
    // Tokens each model has not seen yet; the last one is always the newest token.
    let targetPending = [tokens[0]];
    let draftPending = [...run.prompt, tokens[0]];

    while (reason == null) {
      const k = Math.min(numDraftTokens, maxNewTokens - tokens.length - 1);
      const drafted: number[] = [];
      const draftRows: Float32Array[] = [];
      const draftBase = draftCache.length;
      let draftSnapshot: SpeculativeCache | null = null;
      if (k > 0) {
        // The draft sees its pending tokens and d_1..d_{k−1}; the worst rollback keeps only the pending ones.
        if (!draftCache.canTruncate(draftBase + draftPending.length, draftPending.length + k - 1)) snapshots.push((draftSnapshot = draftCache.clone()));
        let feed = draftPending;
        for (let i = 0; i < k; i++) {
          if (i > 0) feed = [drafted[i - 1]];
          const [row] = await rowsFrom(draft, feed, draftCache, 0, true);
          stats.draftForwards++;
          const { id, processed } = choose(row, [...history, ...drafted]);
          drafted.push(id);
          draftRows.push(processed);
        }
      }

      // The target scores its pending tokens and every draft in one forward: rows for d_1..d_k and the bonus.
      const targetBase = targetCache.length;
      const m = targetPending.length;
      let targetSnapshot: SpeculativeCache | null = null;
      if (k > 0 && !targetCache.canTruncate(targetBase + m, m + k)) snapshots.push((targetSnapshot = targetCache.clone()));
      const raw = await rowsFrom(target, [...targetPending, ...drafted], targetCache, m - 1, false);
      stats.targetForwards++;
      const processed = raw.map((row, i) => processLogits(row, sampling, [...history, ...drafted.slice(0, i)]));
      const { accepted, next } = acceptDraft(processed, draftRows, drafted, greedy ? undefined : rng);
      stats.proposed += k;
      stats.accepted += accepted;

      // Roll back: the target keeps its pending tokens and the accepted drafts; the draft likewise.
      if (accepted < k) {
        if (targetSnapshot == null) {
          targetCache.truncate(targetBase + m + accepted);
          targetPending = [next];
        } else {
          targetCache.dispose();
          targetCache = targetSnapshot;
          snapshots.splice(snapshots.indexOf(targetSnapshot), 1);
          targetPending = [...targetPending, ...drafted.slice(0, accepted), next];
        }
        if (draftSnapshot == null) {
          draftCache.truncate(draftBase + draftPending.length + accepted);
          draftPending = [next];
        } else {
          draftCache.dispose();
          draftCache = draftSnapshot;
          snapshots.splice(snapshots.indexOf(draftSnapshot), 1);
          draftPending = [...draftPending, ...drafted.slice(0, accepted), next];
        }
      } else {
        targetPending = [next];
        // The draft never saw its own last proposal (k = 0: it saw nothing this round).
        draftPending = k > 0 ? [drafted[k - 1], next] : [...draftPending, next];
      }
      for (const s of snapshots.splice(0)) s.dispose();

      let open = true;
      for (let i = 0; i < accepted && open; i++) open = emit(drafted[i], raw[i]);
      if (open) emit(next, raw[accepted]);
    }
  } finally {
    targetCache.dispose();
    draftCache?.dispose();
    for (const s of snapshots) s.dispose();
  }
  stats.acceptanceRate = stats.proposed === 0 ? 0 : stats.accepted / stats.proposed;
  stats.tokensPerTargetForward = tokens.length / stats.targetForwards;
  return { tokens, reason: reason ?? 'length', stepLogits, stats };
}
