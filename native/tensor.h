// Shared by the LibTorch-facing domains of the addon: the per-environment tensor handle table and
// the typed error that every binding throws. Kept free of <torch/torch.h> to keep builds fast.
#pragma once

#include <napi.h>

#include <ATen/core/Tensor.h>

#include <string>
#include <unordered_map>
#include <vector>

namespace soco {

// Tensors live in a table and JS holds their integer index: far cheaper than one JS wrapper object
// per tensor (DESIGN.md: ~1 us against ~6 us), and it lets dispose() free memory deterministically.
// Not thread-safe: use it on the JS thread only (an AsyncWorker's Execute() must copy its at::Tensor
// out in the constructor and Put() results in OnOK()).
class TensorTable {
 public:
  int32_t Put(Napi::Env env, at::Tensor t);
  // Throws a TorchError naming `what` when the handle is not a live tensor.
  const at::Tensor& Get(Napi::Env env, const Napi::Value& v, const char* op, const std::string& what);
  // The live tensor behind a handle, or nullptr: the allocation-free check of the hot path.
  const at::Tensor* Find(int32_t id) const {
    return id >= 0 && id < int32_t(slots_.size()) && slots_[id].defined() ? &slots_[id] : nullptr;
  }
  void Free(Napi::Env env, int32_t id);
  size_t Live() const { return live_; }
  int64_t Bytes() const { return bytes_total_; }
  void Clear();

 private:
  void Account(Napi::Env env, int64_t delta);

  // Views share a storage: V8 hears of each storage once, however many handles reference it.
  struct StorageUse { int64_t bytes; int32_t handles; };

  std::vector<at::Tensor> slots_;
  std::vector<const void*> storage_of_;  // per slot; nullptr when the tensor has no storage
  std::unordered_map<const void*, StorageUse> storages_;
  std::vector<int32_t> free_;
  size_t live_ = 0;
  int64_t bytes_total_ = 0;  // of distinct live storages
  int64_t pending_ = 0;  // bytes not yet reported to V8
};

TensorTable& Tensors(Napi::Env env);

// Throws the JS TorchError (registered by lib/torch at load) carrying the op name.
[[noreturn]] void ThrowTorchError(Napi::Env env, const std::string& op, const std::string& message);

// Runs fn, turning c10 and std exceptions into TorchErrors for `op`.
template <typename Fn>
auto Guard(Napi::Env env, const std::string& op, Fn&& fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const Napi::Error&) {
    throw;
  } catch (const c10::Error& e) {
    ThrowTorchError(env, op, e.what_without_backtrace());
  } catch (const std::exception& e) {
    ThrowTorchError(env, op, e.what());
  }
}

void InitTensor(Napi::Env env, Napi::Object exports);

}  // namespace soco
