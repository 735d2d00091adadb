/**
 * `quantize`: converts the linear layers of a built model to {@link QuantizedLinear}, in place.
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs-core';
import { ConfigError } from '../errors.js';
import { Module } from '../module.js';
import { Linear } from '../layers/linear.js';
import { QuantizedLinear, checkScheme, type QuantizeOptions } from './quantized-linear.js';

/**
 * Which linear layers {@link quantize} converts: a list of names (dotted, as in the checkpoint, without
 * `.weight`; `*` matches any run of characters, so `*.mlp.*` is every MLP projection) or regular expressions, or a
 * predicate. Default: every `Linear` except `lm_head`.
 *
 * @example
 * ```ts
 * import type { QuantizeTargets } from '@slmkit/core';
 * const attentionOnly: QuantizeTargets = ['*.self_attn.*'];
 * const bigOnes: QuantizeTargets = (name, linear) => linear.inFeatures * linear.outFeatures > 1 << 20;
 * ```
 */
export type QuantizeTargets = (string | RegExp)[] | ((name: string, linear: Linear) => boolean);

/**
 * Options of {@link quantize}.
 *
 * @example
 * ```ts
 * import type { ModelQuantizeOptions } from '@slmkit/core';
 * const options: ModelQuantizeOptions = { scheme: 'int4', groupSize: 32, targets: ['*.mlp.*'] };
 * ```
 */
export interface ModelQuantizeOptions extends QuantizeOptions {
  /** Which layers; see {@link QuantizeTargets}. */
  targets?: QuantizeTargets;
}

/**
 * What {@link quantize} did.
 *
 * @example
 * ```ts
 * import type { QuantizeReport } from '@slmkit/core';
 * const show = (r: QuantizeReport) => `${r.layers.length} layers, ${(r.bytesBefore / r.bytesAfter).toFixed(1)}x smaller`;
 * ```
 */
export interface QuantizeReport {
  /** The names of the converted layers. */
  layers: string[];
  /** Bytes of their float32 weights before. */
  bytesBefore: number;
  /** Bytes of their packed weights, scales and zero points after. */
  bytesAfter: number;
}

function matcher(targets: QuantizeTargets | undefined): (name: string, linear: Linear) => boolean {
  if (targets == null) return (name) => name !== 'lm_head' && !name.endsWith('.lm_head');
  if (typeof targets === 'function') return targets;
  if (!Array.isArray(targets)) {
    throw new ConfigError(`quantize: targets must be a list of names / patterns or a predicate, found ${typeof targets}`, {
      field: 'targets',
      expected: '(string | RegExp)[] | (name, linear) => boolean',
      found: typeof targets,
    });
  }
  const patterns = targets.map((t) => {
    if (t instanceof RegExp) return t;
    if (typeof t !== 'string') {
      throw new ConfigError(`quantize: each target must be a string or a RegExp, found ${typeof t}`, { field: 'targets', expected: 'string | RegExp', found: t });
    }
    return new RegExp(`^${t.split('*').map((s) => s.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*')}$`);
  });
  return (name) => patterns.some((p) => p.test(name));
}

/**
 * Converts the linear layers of `model` (every `Linear` module in its tree that `targets` selects) to
 * {@link QuantizedLinear} in place: the quantised layer takes the `Linear`'s place in the tree (its parameters are
 * now `qweight`, `scales`, `zeros`, `bias`), the `Linear` forwards to it (so the blocks holding it run the
 * quantised matmul unchanged), and the `Linear`'s float32 weight is freed. A layer registered under several names
 * (a shared block) becomes one quantised layer. The model then runs `forward` and `generate` as before. Subclasses
 * of `Linear` (routers, LoRA wrappers) are left alone.
 *
 * @returns the converted layers and the bytes of their weights before and after.
 * @throws {@link ConfigError} for an unknown scheme, a bad group size, bad targets, or targets that select nothing.
 *
 * @example
 * ```ts
 * import * as tf from '@tensorflow/tfjs-core';
 * import { GatedMLP, quantize } from '@slmkit/core';
 * const mlp = GatedMLP.create(64, 128);
 * const report = quantize(mlp, { scheme: 'int8' });
 * console.log(report.layers, report.bytesBefore / report.bytesAfter); // ["gate_proj", "up_proj", "down_proj"] ~3.9
 * const y = mlp.forward(tf.ones([1, 64])); // runs the int8 matmuls
 * y.dispose();
 * mlp.dispose();
 * ```
 */
export function quantize(model: Module, options: ModelQuantizeOptions): QuantizeReport {
  if (!(model instanceof Module)) {
    throw new ConfigError(`quantize: model must be a Module, found ${typeof model}`, { field: 'model', expected: 'Module', found: typeof model });
  }
  checkScheme(options?.scheme);
  const select = matcher(options.targets);
  const modules = model.namedModules();
  // Every (parent, child name) under which each selected Linear is registered.
  const places = new Map<Linear, { names: string[]; parents: [Module, string][] }>();
  const byName = new Map(modules);
  for (const [name, m] of modules) {
    if (name === '' || !(m instanceof Linear) || m.constructor !== Linear || !select(name, m)) continue;
    const dot = name.lastIndexOf('.');
    const parent = byName.get(dot < 0 ? '' : name.slice(0, dot))!;
    const entry = places.get(m) ?? { names: [], parents: [] };
    entry.names.push(name);
    entry.parents.push([parent, name.slice(dot + 1)]);
    places.set(m, entry);
  }
  if (places.size === 0) {
    throw new ConfigError('quantize: the targets select no Linear layer', {
      field: 'targets',
      expected: 'at least one Linear',
      found: Array.isArray(options.targets) ? options.targets.map(String) : String(options.targets ?? 'default'),
    });
  }
  for (const [linear, { names }] of places) {
    if (linear.delegate != null) {
      throw new ConfigError(`quantize: ${names[0]} forwards to ${linear.delegate.constructor.name} (an adapter?): merge or remove it first`, {
        field: 'targets',
        expected: 'Linear layers without a delegate',
        found: names[0],
      });
    }
  }
  const report: QuantizeReport = { layers: [], bytesBefore: 0, bytesAfter: 0 };
  for (const [linear, { names, parents }] of places) {
    const q = QuantizedLinear.fromLinear(linear, options);
    for (const [parent, child] of parents) parent.replaceModule(child, q);
    linear.setDelegate(q);
    report.layers.push(...names);
    report.bytesBefore += 4 * linear.weight.size;
    report.bytesAfter += q.weightBytes;
    // The Linear is out of the tree; only its forward (now the quantised layer's) is still used.
    tf.dispose([linear.weight, ...(linear.bias == null ? [] : [linear.bias])]);
  }
  return report;
}
