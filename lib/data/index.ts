// lib/data: images, selective-search proposals, the proposal store, SoCo's views and the loader.
export { decodeImage, readImageSize, isImageDecodeError, DecodeOptions, DecodedImage, ImageSize, ImageFormat, ImageDecodeError } from './image';
export { selectiveSearch, felzenszwalb, SelectiveSearchParams, SelectiveSearchResult, PAPER_PRESET, OFFICIAL_PRESET } from './selective_search';
export {
  ProposalStore, ProposalStoreWriter, ProposalRecord, StoreMeta, StoreCheck, DamagedRecord, DamagedStoreError, openVerified, readAuthorsJson, writeAuthorsJson,
} from './proposal_store';
export { listImageFiles, IMAGE_EXT } from './image_files';
export { GeometryOptions, PAPER_GEOMETRY, officialGeometry, viewLayout, randomBoxes, ImageViews, ViewGeometry, BoxSet, Box } from './views_geometry';
export { ProposalLookup, KeyForm } from './proposal_keys';
export { ViewAugmentation, byolAugmentation, augment, IMAGENET_MEAN, IMAGENET_STD } from './augment';
export { SoCoLoader, LoaderOptions, Batch, LoaderStats, LoaderError, disposeBatch } from './loader';
