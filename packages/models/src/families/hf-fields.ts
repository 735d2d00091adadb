/**
 * Reading fields of a Hugging Face `config.json` with the defaults of its `transformers` config class, and one
 * {@link @slmkit/core!ConfigError | ConfigError} naming the field when a value is missing or malformed. Shared by every family's mapping.
 *
 * @module
 */
import { ConfigError, activationFromHF, rotaryConfigFromHF, type Activation, type RotaryConfig } from '@slmkit/core';
import type { CausalLMConfig } from '../config.js';

/** A parsed `config.json`. */
export type HFConfig = Record<string, unknown>;

function shown(v: unknown): string {
  if (v === undefined) return 'nothing';
  return typeof v === 'string' ? `"${v}"` : (JSON.stringify(v) ?? String(v));
}

/**
 * Field readers bound to one config: each returns the value, the class default when the field is absent (or null),
 * or throws a {@link @slmkit/core!ConfigError | ConfigError} whose message names the model type, the field, what was expected and what was found.
 */
export class HFFields {
  constructor(
    readonly json: HFConfig,
    readonly modelType: string,
  ) {}

  /** Throws a ConfigError about `field`. */
  fail(field: string, expected: string, found: unknown): never {
    throw new ConfigError(`${this.modelType} config.json: ${field} must be ${expected}, found ${shown(found)}`, {
      field,
      expected,
      found,
    });
  }

  private value(field: string): unknown {
    const v = this.json[field];
    return v === null ? undefined : v;
  }

  /** Whether the field is present and not null. */
  has(field: string): boolean {
    return this.value(field) !== undefined;
  }

  /** A positive integer; required unless a default is given. */
  int(field: string, fallback?: number): number {
    const v = this.value(field) ?? fallback;
    if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) {
      return this.fail(field, fallback === undefined ? 'a positive integer (required)' : 'a positive integer', this.json[field]);
    }
    return v;
  }

  /** A finite number > 0. */
  positive(field: string, fallback?: number): number {
    const v = this.value(field) ?? fallback;
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) {
      return this.fail(field, fallback === undefined ? 'a positive number (required)' : 'a positive number', this.json[field]);
    }
    return v;
  }

  /** A boolean. */
  flag(field: string, fallback: boolean): boolean {
    const v = this.value(field) ?? fallback;
    if (typeof v !== 'boolean') return this.fail(field, 'a boolean', this.json[field]);
    return v;
  }

  /** A token id (a non-negative integer) or null. */
  tokenId(field: string, fallback: number | null): number | null {
    const v = this.value(field) ?? fallback;
    if (v === null) return null;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) return this.fail(field, 'a token id (an integer >= 0) or null', v);
    return v;
  }

  /** One token id, a list of them, or null (`eos_token_id` may be a list). */
  tokenIds(field: string, fallback: number | null): number | number[] | null {
    const v = this.value(field);
    if (Array.isArray(v)) {
      v.forEach((id, i) => {
        if (typeof id !== 'number' || !Number.isInteger(id) || id < 0) this.fail(`${field}[${i}]`, 'a token id (an integer >= 0)', id);
      });
      return [...(v as number[])];
    }
    return this.tokenId(field, fallback);
  }

  /** The MLP activation from the first present of `fields` (HF spellings), else `fallback`. */
  activation(fields: string[], fallback: string): Activation {
    const field = fields.find((f) => this.has(f));
    const value = field == null ? fallback : this.json[field];
    try {
      return activationFromHF(value as string);
    } catch (e) {
      if (e instanceof ConfigError) {
        throw new ConfigError(`${this.modelType} config.json: ${e.message.replace(/^hidden_act/, field ?? fields[0])}`, {
          ...e.details,
          field: field ?? fields[0],
        });
      }
      throw e;
    }
  }

  /**
   * The rotary config through core's {@link rotaryConfigFromHF}, with the class defaults filled in first
   * (`max_position_embeddings`, `rope_theta`, `partial_rotary_factor`, `head_dim`), and its errors prefixed
   * with the model type.
   */
  rotary(defaults: HFConfig): RotaryConfig {
    const filled: HFConfig = { ...this.json };
    for (const [k, v] of Object.entries(defaults)) if (filled[k] == null) filled[k] = v;
    try {
      return rotaryConfigFromHF(filled);
    } catch (e) {
      if (e instanceof ConfigError) throw new ConfigError(`${this.modelType} config.json: ${e.message}`, e.details);
      throw e;
    }
  }

  /** `head_dim` when present, else `hidden_size / num_attention_heads` (which must then divide exactly). */
  headDim(hiddenSize: number, numHeads: number, explicit = true): number {
    if (explicit && this.has('head_dim')) return this.int('head_dim');
    if (hiddenSize % numHeads !== 0) {
      return this.fail('num_attention_heads', `a divisor of hidden_size (${hiddenSize})`, numHeads);
    }
    return hiddenSize / numHeads;
  }

  /** `num_key_value_heads` (default: `num_attention_heads`), checked to divide the query heads. */
  kvHeads(numHeads: number, fallback: number = numHeads): number {
    const kv = this.int('num_key_value_heads', fallback);
    if (numHeads % kv !== 0) this.fail('num_key_value_heads', `a divisor of num_attention_heads (${numHeads})`, kv);
    return kv;
  }

  /**
   * The sizes every decoder family reads the same way. `headDim` says how the family finds the head width:
   * `head_dim` if present else hidden / heads (`'explicit'`), always hidden / heads (`'derived'`, Phi, StableLM),
   * or `head_dim` with the given class default (Gemma). `kvHeadsDefault` is the class default of
   * `num_key_value_heads` (default: the number of query heads).
   */
  dimensions(
    headDim: 'explicit' | 'derived' | { default: number },
    kvHeadsDefault?: number,
  ): Pick<CausalLMConfig, 'vocabSize' | 'hiddenSize' | 'numLayers' | 'numHeads' | 'numKVHeads' | 'headDim' | 'intermediateSize'> {
    const hiddenSize = this.int('hidden_size');
    const numHeads = this.int('num_attention_heads');
    return {
      vocabSize: this.int('vocab_size'),
      hiddenSize,
      numLayers: this.int('num_hidden_layers'),
      numHeads,
      numKVHeads: this.kvHeads(numHeads, kvHeadsDefault),
      headDim:
        typeof headDim === 'object' ? this.int('head_dim', headDim.default) : this.headDim(hiddenSize, numHeads, headDim === 'explicit'),
      intermediateSize: this.int('intermediate_size'),
    };
  }

  /** `bos_token_id`, `eos_token_id` (one or several) and `pad_token_id`, with the class defaults. */
  specialTokens(bos: number | null, eos: number | null, pad: number | null): Pick<CausalLMConfig, 'bosTokenId' | 'eosTokenId' | 'padTokenId'> {
    return {
      bosTokenId: this.tokenId('bos_token_id', bos),
      eosTokenId: this.tokenIds('eos_token_id', eos),
      padTokenId: this.tokenId('pad_token_id', pad),
    };
  }
}
