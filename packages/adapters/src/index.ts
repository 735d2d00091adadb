/**
 * `@slmkit/adapters`: LoRA, rsLoRA and DoRA on any linear layer, adapter policies, several named adapters on one
 * base model (switch, disable, merge, unmerge), Hugging Face PEFT adapters in and out, and fine-tuning steps that
 * train only the adapter.
 *
 * @packageDocumentation
 */
export { LoRAAdapter, LoRALinear, DoRALinear, type LoRAOptions } from './lora-linear.js';
export type { AdapterPolicy, AdapterTarget } from './policy.js';
export {
  adaptedLayers,
  addAdapter,
  setAdapter,
  adapterNames,
  activeAdapter,
  disableAdapters,
  enableAdapters,
  mergeAdapters,
  unmergeAdapters,
  deleteAdapter,
  adapterParameters,
} from './model.js';
export {
  loadAdapter,
  saveAdapter,
  serializeAdapter,
  policyFromPeftConfig,
  type LoadAdapterOptions,
  type SaveAdapterOptions,
  type SerializedAdapter,
} from './peft.js';
export { nextTokenLoss, trainAdapterStep, type AdaptableLM, type TrainAdapterStepOptions } from './train.js';
