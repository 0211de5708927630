// Entry point: each domain registers its bindings on the exports object.
#include <napi.h>

#include "tensor.h"

namespace soco {
void InitImage(Napi::Env env, Napi::Object exports);
void InitProposals(Napi::Env env, Napi::Object exports);
void InitDist(Napi::Env env, Napi::Object exports);
void InitTorchScript(Napi::Env env, Napi::Object exports);
void InitIo(Napi::Env env, Napi::Object exports);
}  // namespace soco

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  soco::InitTensor(env, exports);
  soco::InitImage(env, exports);
  soco::InitProposals(env, exports);
  soco::InitDist(env, exports);
  soco::InitTorchScript(env, exports);
  soco::InitIo(env, exports);
  return exports;
}

NODE_API_MODULE(soco_train, Init)
