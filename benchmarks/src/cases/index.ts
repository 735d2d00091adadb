/**
 * Every registered case. A block family adds its cases as one file beside this one that exports `cases`, and one
 * line here.
 */
import { checkUniqueIds, type BenchCase } from '../registry.js';
import { cases as adapters } from './adapters.js';
import { cases as attention } from './attention.js';
import { cases as embedding } from './embedding.js';
import { cases as linear } from './linear.js';
import { cases as linearLayout } from './linear-layout.js';
import { cases as mlp } from './mlp.js';
import { cases as model } from './model.js';
import { cases as moe } from './moe.js';
import { cases as norm } from './norm.js';
import { cases as quant } from './quant.js';
import { cases as rotary } from './rotary.js';
import { cases as speculative } from './speculative.js';
import { cases as ssm } from './ssm.js';
import { cases as ssd } from './ssd.js';

/** All cases, in the order a run executes them. */
export const allCases: readonly BenchCase[] = [...linear, ...linearLayout, ...mlp, ...norm, ...rotary, ...embedding, ...attention, ...ssm, ...ssd, ...moe, ...adapters, ...quant, ...model, ...speculative];
checkUniqueIds(allCases);
