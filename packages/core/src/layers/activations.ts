/**
 * Activation functions used by the MLPs of the supported families, and the mapping from Hugging Face
 * `hidden_act` strings to them.
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { ConfigError } from '../errors.js';

/**
 * The activations slmkit implements:
 *
 * - `silu`: `x · σ(x)` (a.k.a. swish; SwiGLU in Llama, Mistral, Qwen);
 * - `gelu`: exact GELU, `½x(1 + erf(x/√2))` (Hendrycks & Gimpel 2016, "Gaussian Error Linear Units");
 * - `gelu_tanh`: GELU's tanh approximation, `½x(1 + tanh(√(2/π)(x + 0.044715x³)))` (Gemma's GeGLU, Phi);
 * - `relu`: `max(x, 0)`;
 * - `relu2`: `max(x, 0)²` (So et al. 2021, "Primer"; Nemotron).
 *
 * @example
 * ```ts
 * import type { Activation } from '@slmkit/core';
 * const act: Activation = 'gelu_tanh';
 * ```
 */
export type Activation = 'silu' | 'gelu' | 'gelu_tanh' | 'relu' | 'relu2';

/**
 * An elementwise activation: takes a float32 tensor, returns a new one of the same shape that the caller owns.
 *
 * @example
 * ```ts
 * import * as tf from '@tensorflow/tfjs-core';
 * import type { ActivationFn } from '@slmkit/core';
 * const leaky: ActivationFn = (x) => tf.leakyRelu(x, 0.01);
 * ```
 */
export type ActivationFn = (x: tf.Tensor) => tf.Tensor;

/**
 * Every {@link Activation} name.
 *
 * @example
 * ```ts
 * import { ACTIVATIONS } from '@slmkit/core';
 * console.log(ACTIVATIONS.includes('relu2')); // true
 * ```
 */
export const ACTIVATIONS: readonly Activation[] = ['silu', 'gelu', 'gelu_tanh', 'relu', 'relu2'];

/**
 * Hugging Face `hidden_act` strings and the {@link Activation} computing the same function. Several HF names are
 * one function written differently:
 *
 * - `silu`, `swish` → `silu`;
 * - `gelu`, `gelu_python` → `gelu` (both erf-exact);
 * - `gelu_new`, `gelu_pytorch_tanh`, `gelu_accurate`, `gelu_fast` → `gelu_tanh`: the same tanh formula.
 *   `gelu_fast` writes `x·0.7978845608·(1 + 0.044715x²)`; its constant rounds to the same float32 as √(2/π), so
 *   in float32 it is the same function;
 * - `relu` → `relu`; `relu2` → `relu2`.
 *
 * Names with other maths (`quick_gelu`, `gelu_10`, `relu6`, `tanh`, `mish`, …) are absent on purpose.
 *
 * @example
 * ```ts
 * import { HF_ACTIVATIONS } from '@slmkit/core';
 * console.log(HF_ACTIVATIONS['gelu_pytorch_tanh']); // "gelu_tanh"
 * ```
 */
export const HF_ACTIVATIONS: Readonly<Record<string, Activation>> = Object.freeze({
  silu: 'silu',
  swish: 'silu',
  gelu: 'gelu',
  gelu_python: 'gelu',
  gelu_new: 'gelu_tanh',
  gelu_pytorch_tanh: 'gelu_tanh',
  gelu_accurate: 'gelu_tanh',
  gelu_fast: 'gelu_tanh',
  relu: 'relu',
  relu2: 'relu2',
});

const SQRT_2_OVER_PI = Math.sqrt(2 / Math.PI);

const FUNCTIONS: Record<Activation, ActivationFn> = {
  silu: (x) => tf.tidy(() => tf.mul(x, tf.sigmoid(x))),
  // tf.erf is Abramowitz & Stegun 7.1.26 on every backend (absolute error ≤ 1.5e-7, about float32's epsilon).
  gelu: (x) => tf.tidy(() => tf.mul(tf.mul(x, 0.5), tf.add(tf.erf(tf.mul(x, Math.SQRT1_2)), 1))),
  gelu_tanh: (x) =>
    tf.tidy(() => {
      // x·x·x rather than tf.pow: WebGPU's pow goes through exp/log and loses digits.
      const cube = tf.mul(tf.mul(x, x), x);
      const inner = tf.mul(tf.add(x, tf.mul(cube, 0.044715)), SQRT_2_OVER_PI);
      return tf.mul(tf.mul(x, 0.5), tf.add(tf.tanh(inner), 1));
    }),
  relu: (x) => tf.relu(x),
  relu2: (x) => tf.tidy(() => tf.square(tf.relu(x))),
};

/**
 * The function computing an {@link Activation}. Each call of the returned function runs in its own `tf.tidy`, so
 * only the result survives.
 *
 * @param name - one of {@link ACTIVATIONS}.
 * @throws {@link ConfigError} naming the value and the accepted names when `name` is not an {@link Activation}.
 *
 * @example
 * ```ts
 * import * as tf from '@tensorflow/tfjs-core';
 * import { activation } from '@slmkit/core';
 * const gelu = activation('gelu');
 * const x = tf.tensor1d([-1, 0, 1]);
 * const y = gelu(x);
 * y.print(); // [-0.1587, 0, 0.8413]
 * tf.dispose([x, y]);
 * ```
 */
export function activation(name: Activation): ActivationFn {
  if (typeof name !== 'string' || !Object.prototype.hasOwnProperty.call(FUNCTIONS, name)) {
    throw new ConfigError(`activation: unknown activation "${String(name)}"; expected one of ${ACTIVATIONS.join(', ')}`, {
      field: 'activation',
      expected: ACTIVATIONS,
      found: name,
    });
  }
  return FUNCTIONS[name];
}

/**
 * Maps a Hugging Face config's `hidden_act` (or `hidden_activation`) to the {@link Activation} that computes the
 * same function; see {@link HF_ACTIVATIONS} for the table.
 *
 * @param hiddenAct - the config value, e.g. `"silu"`, `"gelu_new"`, `"gelu_pytorch_tanh"`.
 * @throws {@link ConfigError} naming the value and listing the accepted names when it is not in the table.
 *
 * @example
 * ```ts
 * import * as tf from '@tensorflow/tfjs-core';
 * import { activation, activationFromHF } from '@slmkit/core';
 * const name = activationFromHF('gelu_new'); // "gelu_tanh" (Phi)
 * const act = activation(name);
 * const y = act(tf.ones([2]));
 * console.log(name, y.shape);
 * y.dispose();
 * ```
 */
export function activationFromHF(hiddenAct: string): Activation {
  if (typeof hiddenAct === 'string' && Object.prototype.hasOwnProperty.call(HF_ACTIVATIONS, hiddenAct)) {
    return HF_ACTIVATIONS[hiddenAct]!;
  }
  const accepted = Object.keys(HF_ACTIVATIONS);
  throw new ConfigError(
    `hidden_act: unsupported activation "${String(hiddenAct)}"; expected one of ${accepted.join(', ')}`,
    { field: 'hidden_act', expected: accepted, found: hiddenAct },
  );
}
