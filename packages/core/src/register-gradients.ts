// Browsers and bundlers load tfjs-core's ES modules, where the op gradients are a separate side-effect import.
import '@tensorflow/tfjs-core/dist/register_all_gradients.js';
