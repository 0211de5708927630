// Node-API bindings for selective search (algorithm in proposals.h). Work runs on the libuv
// thread pool (one image per AsyncWorker), so the event loop never waits and N images in
// flight use N threads. The input is copied: JS may reuse its buffer while we run.
#include <napi.h>

#include <cmath>
#include <limits>
#include <string>

#include "proposals.h"

namespace soco {
namespace {

struct Input {
  std::vector<uint8_t> rgb;
  int width = 0, height = 0;
  soco_ss::Params params;
};

Napi::Value Fail(Napi::Env env, const std::string& msg) {
  Napi::TypeError::New(env, msg).ThrowAsJavaScriptException();
  return env.Undefined();
}

// Reads (rgb, width, height, params?) with errors that name the offending argument.
bool ParseInput(const Napi::CallbackInfo& info, const char* fn, Input& in) {
  Napi::Env env = info.Env();
  const std::string f(fn);
  if (info.Length() < 3 || !info[0].IsTypedArray() ||
      info[0].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
    Fail(env, f + ": argument 'rgb' must be a Uint8Array of height*width*3 bytes (RGB, HWC)");
    return false;
  }
  auto dim = [&](size_t i, const char* name, int& out) {
    if (!info[i].IsNumber()) { Fail(env, f + ": argument '" + name + "' must be a number"); return false; }
    const double v = info[i].As<Napi::Number>().DoubleValue();
    if (!(v >= 1 && v <= 65535 && std::floor(v) == v)) {
      Fail(env, f + ": argument '" + name + "' must be an integer in [1, 65535], got " + std::to_string(v));
      return false;
    }
    out = int(v);
    return true;
  };
  if (!dim(1, "width", in.width) || !dim(2, "height", in.height)) return false;
  const size_t n = size_t(in.width) * size_t(in.height);
  if (n >= (size_t(1) << 30)) { Fail(env, f + ": image too large (width*height must be < 2^30)"); return false; }
  Napi::Uint8Array arr = info[0].As<Napi::Uint8Array>();
  if (arr.ElementLength() != n * 3) {
    Fail(env, f + ": argument 'rgb' has " + std::to_string(arr.ElementLength()) + " bytes, expected width*height*3 = " +
                  std::to_string(n * 3));
    return false;
  }
  in.rgb.assign(arr.Data(), arr.Data() + n * 3);
  if (info.Length() > 3 && !info[3].IsUndefined() && !info[3].IsNull()) {
    if (!info[3].IsObject()) { Fail(env, f + ": argument 'params' must be an object"); return false; }
    Napi::Object p = info[3].As<Napi::Object>();
    auto num = [&](const char* key, double lo, double hi, bool integer, double& out) {
      Napi::Value v = p.Get(key);
      if (v.IsUndefined()) return true;
      if (!v.IsNumber()) { Fail(env, f + ": params." + key + " must be a number"); return false; }
      const double d = v.As<Napi::Number>().DoubleValue();
      if (!(d >= lo && d <= hi) || (integer && std::floor(d) != d)) {
        Fail(env, f + ": params." + key + " out of range: " + std::to_string(d));
        return false;
      }
      out = d;
      return true;
    };
    auto flag = [&](const char* key, bool& out) {
      Napi::Value v = p.Get(key);
      if (v.IsUndefined()) return true;
      if (!v.IsBoolean()) { Fail(env, f + ": params." + key + " must be a boolean"); return false; }
      out = v.As<Napi::Boolean>().Value();
      return true;
    };
    double scale = in.params.scale, sigma = in.params.sigma, minSize = in.params.minSize,
           maxSide = in.params.maxSide;
    if (!num("scale", 1e-9, 1e9, false, scale) || !num("sigma", 0, 100, false, sigma) ||
        !num("minSize", 0, 1e9, true, minSize) || !num("maxSide", 0, 65535, true, maxSide) ||
        !flag("pixelAdjacency", in.params.pixelAdjacency) || !flag("fullHsv", in.params.fullHsv) ||
        !flag("filter", in.params.filter) || !flag("numpyTieOrder", in.params.numpyTieOrder))
      return false;
    in.params.scale = scale;
    in.params.sigma = sigma;
    in.params.minSize = int(minSize);
    in.params.maxSide = int(maxSide);
  }
  return true;
}

Napi::Int32Array ToInt32Array(Napi::Env env, const std::vector<int32_t>& v) {
  Napi::Int32Array a = Napi::Int32Array::New(env, v.size());
  if (!v.empty()) std::memcpy(a.Data(), v.data(), v.size() * sizeof(int32_t));
  return a;
}

class SelectiveSearchWorker : public Napi::AsyncWorker {
 public:
  SelectiveSearchWorker(Napi::Env env, Input&& in, bool wantLabels)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), in_(std::move(in)),
        wantLabels_(wantLabels) {}
  Napi::Promise Promise() { return deferred_.Promise(); }

 protected:
  void Execute() override {
    try {
      res_ = soco_ss::selectiveSearch(in_.rgb.data(), in_.width, in_.height, in_.params,
                                      wantLabels_ ? &labels_ : nullptr);
    } catch (const std::exception& e) {
      SetError(std::string("selectiveSearch: ") + e.what());
    }
    std::vector<uint8_t>().swap(in_.rgb);
  }
  void OnOK() override {
    Napi::Env env = Env();
    Napi::Object o = Napi::Object::New(env);
    o.Set("boxes", ToInt32Array(env, res_.boxes));
    o.Set("rawCount", res_.rawCount);
    o.Set("uniqueCount", res_.uniqueCount);
    o.Set("filterStage", res_.filterStage);
    o.Set("segments", res_.segments);
    o.Set("width", res_.width);
    o.Set("height", res_.height);
    if (wantLabels_) o.Set("labels", ToInt32Array(env, labels_));
    deferred_.Resolve(o);
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  Input in_;
  bool wantLabels_;
  soco_ss::Result res_;
  std::vector<int32_t> labels_;
};

class FelzenszwalbWorker : public Napi::AsyncWorker {
 public:
  FelzenszwalbWorker(Napi::Env env, Input&& in)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), in_(std::move(in)) {}
  Napi::Promise Promise() { return deferred_.Promise(); }

 protected:
  void Execute() override {
    try {
      segments_ = soco_ss::felzenszwalb(in_.rgb.data(), in_.width, in_.height, in_.params.scale,
                                        in_.params.sigma, in_.params.minSize,
                                        in_.params.numpyTieOrder, labels_);
    } catch (const std::exception& e) {
      SetError(std::string("felzenszwalb: ") + e.what());
    }
  }
  void OnOK() override {
    Napi::Env env = Env();
    Napi::Object o = Napi::Object::New(env);
    o.Set("labels", ToInt32Array(env, labels_));
    o.Set("segments", segments_);
    deferred_.Resolve(o);
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  Input in_;
  int segments_ = 0;
  std::vector<int32_t> labels_;
};

// selectiveSearch(rgb, width, height, params?, wantLabels?) -> Promise<result>
Napi::Value SelectiveSearch(const Napi::CallbackInfo& info) {
  Input in;
  if (!ParseInput(info, "selectiveSearch", in)) return info.Env().Undefined();
  bool wantLabels = false;
  if (info.Length() > 4 && !info[4].IsUndefined()) {
    if (!info[4].IsBoolean()) return Fail(info.Env(), "selectiveSearch: argument 'wantLabels' must be a boolean");
    wantLabels = info[4].As<Napi::Boolean>().Value();
  }
  auto* w = new SelectiveSearchWorker(info.Env(), std::move(in), wantLabels);
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

// felzenszwalb(rgb, width, height, params?) -> Promise<{labels, segments}>
Napi::Value Felzenszwalb(const Napi::CallbackInfo& info) {
  Input in;
  if (!ParseInput(info, "felzenszwalb", in)) return info.Env().Undefined();
  auto* w = new FelzenszwalbWorker(info.Env(), std::move(in));
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

}  // namespace

void InitProposals(Napi::Env env, Napi::Object exports) {
  exports.Set("selectiveSearch", Napi::Function::New(env, SelectiveSearch, "selectiveSearch"));
  exports.Set("felzenszwalb", Napi::Function::New(env, Felzenszwalb, "felzenszwalb"));
}

}  // namespace soco
