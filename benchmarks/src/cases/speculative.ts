/**
 * Speculative decoding vs plain decoding: greedy generation of 24 new tokens after a 32-token prompt with the
 * SmolLM-135M preset (`smollm135m()`: 30 layers, d 576, tied 49152-token embeddings) as the target, randomly
 * initialised at each setup (greedy decoding then gives the same tokens on every timed run of that setup).
 *
 * The draft is the target's own first 3 layers (its embeddings, its first three decoder layers, its final norm
 * and head, the weights copied), a layer-skip draft that needs no training and costs about a tenth of a target
 * step. On random weights it is the best case: a randomly initialised model with tied embeddings predicts mostly
 * its own input token at any depth (the residual stream is still the embedding), so the draft is always right.
 * The `random-draft` series is the worst case: a 3-layer draft with its own random weights and an untied head,
 * which the target almost never agrees with, so every round pays k draft steps for one token. A trained draft
 * lands between the two. Acceptance is measured, not assumed: setup runs the generation once (untimed) and writes
 * the acceptance rate (`accept%`) and the new tokens per target forward (`tok/fwd`) into the case's shape. Time per run is the whole `generate` call
 * (prefill included); tokens/s is 24 / median time. Greedy output is the same with and without the draft.
 */
import { CausalLM, generate, smollm135m, type GenerateOptions } from '@slmkit/models';
import { benchCase, type BenchCase } from '../registry.js';

const target = smollm135m();
const PROMPT = 32;
const NEW = 24;
const DRAFT_LAYERS = 3;

/** Seeded prompt ids (a fixed linear-congruential walk over the vocabulary). */
const prompt = Array.from({ length: PROMPT }, (_, i) => (1 + 7919 * (i + 1) * (i + 3)) % target.vocabSize);

/** The target, and (for k > 0) a draft holding copies of its embeddings, first layers, final norm and head. */
function build(draftKind: 'none' | 'first-layers' | 'random'): { lm: CausalLM; draft: CausalLM | undefined } {
  const lm = new CausalLM(target);
  if (draftKind === 'none') return { lm, draft: undefined };
  // The random draft gets its own untied head: tied random models all predict their input token (see above).
  const draft = new CausalLM({ ...target, numLayers: DRAFT_LAYERS, tieWordEmbeddings: draftKind === 'first-layers' && target.tieWordEmbeddings });
  if (draftKind === 'first-layers') {
    const source = new Map(lm.namedParameters());
    for (const [name, v] of draft.namedParameters()) v.assign(source.get(name)!);
  }
  return { lm, draft };
}

function speculativeCase(numDraftTokens: number, draftKind: 'first-layers' | 'random' = 'first-layers'): BenchCase {
  const shape: Record<string, number> = { B: 1, prompt: PROMPT, new: NEW, layers: target.numLayers, d: target.hiddenSize, vocab: target.vocabSize };
  if (numDraftTokens > 0) Object.assign(shape, { draftLayers: DRAFT_LAYERS, k: numDraftTokens });
  return benchCase({
    block: 'speculative',
    series:
      numDraftTokens === 0
        ? 'speculative/smollm135m/plain'
        : draftKind === 'random'
          ? `speculative/smollm135m/random-draft-${DRAFT_LAYERS}-layers-k${numDraftTokens}`
          : `speculative/smollm135m/draft-first-${DRAFT_LAYERS}-layers-k${numDraftTokens}`,
    axis: { name: 'ctx', value: PROMPT },
    phase: 'decode',
    shape,
    quick: numDraftTokens === 0 || (numDraftTokens === 4 && draftKind === 'first-layers'),
    setup: async () => {
      const { lm, draft } = build(numDraftTokens === 0 ? 'none' : draftKind);
      const options: GenerateOptions = { maxNewTokens: NEW, stopTokens: [], ...(draft != null ? { draft, numDraftTokens } : {}) };
      const first = await generate(lm, [prompt], options);
      if (first.speculative != null) {
        // Measured here, reported with the timings: greedy decoding makes every timed run the same.
        shape['accept%'] = Number((100 * first.speculative.acceptanceRate).toFixed(1));
        shape['tok/fwd'] = Number(first.speculative.tokensPerTargetForward.toFixed(2));
      }
      return {
        run: async () => {
          await generate(lm, [prompt], options);
          return [];
        },
        teardown: () => {
          lm.dispose();
          draft?.dispose();
        },
      };
    },
  });
}

export const cases: BenchCase[] = [...[0, 2, 4, 6].map((k) => speculativeCase(k)), speculativeCase(4, 'random')];
