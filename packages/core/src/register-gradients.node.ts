// In Node, `@tensorflow/tfjs-core` resolves to its CommonJS bundle, which has no op gradients, and its ESM
// `register_all_gradients` cannot be loaded by Node (extensionless imports). The `@tensorflow/tfjs` Node bundle
// registers every op gradient with the same tfjs-core instance, so it is what makes `tf.grad` work here.
import '@tensorflow/tfjs';
