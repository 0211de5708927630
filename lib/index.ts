// Public API of the soco-train package: `import { SoCoTrainer } from 'soco-train'`; the layers
// below it as namespaces (torch, nn, model, data, dist).
export * as torch from './torch';
export * as nn from './nn';
export * as model from './model';
export * as data from './data';
export * as dist from './distributed';
export * from './train';
