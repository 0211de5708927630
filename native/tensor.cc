// Tensors, the generic operator call, autograd and random generators.
//
// Every ATen (and torchvision) operator is reached through the c10 dispatcher by its schema, so one
// binding serves all of them: arguments are converted by the schema's declared types, which also
// gives every op the same argument checking. Autograd and autocast work as for Python, because
// boxed calls pass through the same dispatch keys.
#include "tensor.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Context.h>
#include <ATen/Parallel.h>
#include <ATen/autocast_mode.h>
#include <ATen/core/Generator.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/detail/CUDAHooksInterface.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/from_blob.h>
#include <c10/core/CPUAllocator.h>
#include <c10/core/GradMode.h>
#include <c10/util/Logging.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/version.h>

#ifdef SOCO_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#include <cuda_runtime_api.h>
#endif

#include <dlfcn.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <mutex>
#include <sstream>
#include <unordered_map>

namespace soco_image {
std::shared_ptr<void> SharedPixels(const void* data, size_t bytes);  // native/image.cc
}

namespace soco {
namespace {

// How one schema argument is read from JS; resolved once per operator, not per call.
enum class Kind {
  Tensor, Int, Float, Bool, Scalar, ScalarType, Layout, MemoryFormat, IntList, FloatList, BoolList,
  TensorList, OptTensorList, ScalarList, String, Device, Generator, Unsupported
};

struct ArgSpec {
  std::string name;
  Kind kind;
  bool optional;
  c10::optional<c10::IValue> defaultValue;
  std::string typeName;
  int32_t length;     // int[N] (kernel_size, stride, ...): N, else 0
  bool emptyDefault;  // the schema's default is [] ("as kernel_size")
};

struct OpInfo;
// Checks what an operator's kernel does not (native/tensor.cc ArgCheckFor), on the converted arguments.
using ArgCheck = void (*)(Napi::Env env, const OpInfo& op, const torch::jit::Stack& args);

struct OpInfo {
  c10::OperatorHandle handle;
  std::string name;
  std::string schema;
  std::vector<ArgSpec> args;
  size_t numReturns;
  std::string argKinds;     // per argument: 't' tensor, 'T' tensor list, 'v' other (for callOp in JS)
  std::string returnKinds;  // per return, the same letters
  bool returnsSelf;  // in-place op: hand back the caller's own handle instead of a new one
  ArgCheck check;    // null for the operators whose kernels check their own arguments
};

struct State {
  TensorTable tensors;
  std::vector<OpInfo> ops;
  std::unordered_map<std::string, int32_t> opIndex;
  std::vector<at::Generator> generators;
  Napi::FunctionReference torchError;
  torch::jit::Stack stack;  // reused by every call(): no allocation per op
};

State& GetState(Napi::Env env) { return *env.GetInstanceData<State>(); }

Kind KindOf(const c10::TypePtr& type) {
  using c10::TypeKind;
  switch (type->kind()) {
    case TypeKind::TensorType: return Kind::Tensor;
    case TypeKind::IntType:
    case TypeKind::SymIntType: return Kind::Int;
    // Enums travel as their integer codes; they get range checks because LibTorch indexes tables
    // with them and only checks in debug builds.
    case TypeKind::ScalarTypeType: return Kind::ScalarType;
    case TypeKind::LayoutType: return Kind::Layout;
    case TypeKind::MemoryFormatType: return Kind::MemoryFormat;
    case TypeKind::FloatType: return Kind::Float;
    case TypeKind::BoolType: return Kind::Bool;
    case TypeKind::NumberType: return Kind::Scalar;
    case TypeKind::StringType: return Kind::String;
    case TypeKind::DeviceObjType: return Kind::Device;
    case TypeKind::GeneratorType: return Kind::Generator;
    case TypeKind::ListType: {
      const auto& elem = type->expectRef<c10::ListType>().getElementType();
      switch (elem->kind()) {
        case TypeKind::IntType:
        case TypeKind::SymIntType: return Kind::IntList;
        case TypeKind::FloatType: return Kind::FloatList;
        case TypeKind::BoolType: return Kind::BoolList;
        case TypeKind::TensorType: return Kind::TensorList;
        case TypeKind::NumberType: return Kind::ScalarList;
        case TypeKind::OptionalType:
          if (elem->expectRef<c10::OptionalType>().getElementType()->kind() == TypeKind::TensorType)
            return Kind::OptTensorList;
          return Kind::Unsupported;
        default: return Kind::Unsupported;
      }
    }
    default: return Kind::Unsupported;
  }
}

[[noreturn]] void ThrowArg(Napi::Env env, const OpInfo& op, const ArgSpec& a, const std::string& got) {
  ThrowTorchError(env, op.name, "argument '" + a.name + "' expects " + a.typeName + ", got " + got);
}

const char* JsTypeName(const Napi::Value& v) {
  switch (v.Type()) {
    case napi_undefined: return "undefined";
    case napi_null: return "null";
    case napi_boolean: return "boolean";
    case napi_number: return "number";
    case napi_string: return "string";
    case napi_bigint: return "bigint";
    case napi_function: return "function";
    case napi_object: return v.IsArray() ? "array" : v.IsTypedArray() ? "a TypedArray" : "object";
    default: return "a value of another type";
  }
}

std::string NumberText(double d) {
  if (std::nearbyint(d) == d && std::abs(d) < 1e18) return std::to_string(int64_t(d));
  std::ostringstream s;
  s.precision(10);
  s << d;
  return s.str();
}

// Integers must be exact: truncating 2.5 to 2 would silently change shapes and indices.
int64_t ToInt(Napi::Env env, const OpInfo& op, const ArgSpec& a, const Napi::Value& v, const char* what) {
  if (!v.IsNumber()) ThrowArg(env, op, a, what ? std::string(what) + " " + JsTypeName(v) : std::string(JsTypeName(v)));
  double d = v.As<Napi::Number>().DoubleValue();
  if (!(std::nearbyint(d) == d && std::abs(d) <= 9.007199254740991e15))
    ThrowArg(env, op, a, (what ? std::string(what) + " " : std::string("the number ")) + NumberText(d));
  return int64_t(d);
}

c10::Scalar ToScalar(double d) {
  // Integral JS numbers become integer Scalars so integer tensors keep their dtype.
  if (std::nearbyint(d) == d && std::abs(d) < 9.007199254740992e15) return c10::Scalar(int64_t(d));
  return c10::Scalar(d);
}

// Fast handle lookup: one N-API call for a number, none of the string building of the error path.
inline const at::Tensor* FindHandle(Napi::Env env, State& st, napi_value v) {
  double d;
  if (napi_get_value_double(env, v, &d) != napi_ok) return nullptr;
  int32_t id = int32_t(d);  // not UB: every handle number fits; others fail the equality below
  if (!(d >= 0 && d < 2147483647.0) || double(id) != d) return nullptr;
  return st.tensors.Find(id);
}

const at::Tensor& TensorArg(Napi::Env env, State& st, const OpInfo& op, const ArgSpec& a,
                            const Napi::Value& v, int64_t index = -1) {
  if (const at::Tensor* t = FindHandle(env, st, v)) return *t;
  // Slow path: build the message only when there is an error.
  std::string what = "argument '" + a.name + "'" + (index >= 0 ? "[" + std::to_string(index) + "]" : "");
  if (!v.IsNumber()) ThrowArg(env, op, a, (index >= 0 ? "an array holding " : "") + std::string(JsTypeName(v)));
  return st.tensors.Get(env, v, op.name.c_str(), what);
}

// int[N] arguments (kernel_size, stride, padding, output_size, ...): kernels read N elements and
// compute in 32 bits without checking (an empty kernel_size or padding crashed several, a 2^40
// kernel hung max_pool1d). So for N >= 2 the length is N, or 1 (repeated N times, as Python's
// argument parser does for a number), or 0 where the schema's default is []; int[1] means "one
// int or a list" (dim lists: any length). Every element fits 32 bits.
c10::IValue IntList(Napi::Env env, const OpInfo& op, const ArgSpec& a, std::vector<int64_t> v) {
  if (a.length > 0) {
    if (a.length > 1 && v.size() == 1) v.assign(a.length, v[0]);
    if (a.length > 1 && !(v.size() == size_t(a.length) || (v.empty() && a.emptyDefault)))
      ThrowArg(env, op, a, "an array of " + std::to_string(v.size()));
    for (int64_t x : v)
      if (x < std::numeric_limits<int32_t>::min() || x > std::numeric_limits<int32_t>::max()) ThrowArg(env, op, a, "an array holding " + std::to_string(x) + ", beyond 32 bits");
  }
  return c10::IValue(std::move(v));
}

// `missing` is an argument the caller left out (cheaper than materialising undefined).
c10::IValue Convert(Napi::Env env, State& st, const OpInfo& op, const ArgSpec& a,
                    const Napi::Value& v, bool missing) {
  // Hot path first: a live tensor handle needs a single N-API call.
  if (a.kind == Kind::Tensor && !missing)
    if (const at::Tensor* t = FindHandle(env, st, v)) return *t;
  napi_valuetype type = missing ? napi_undefined : v.Type();
  if (type == napi_undefined) {
    if (a.defaultValue) return *a.defaultValue;
    if (a.optional) return c10::IValue();
    ThrowArg(env, op, a, "nothing (the argument is required)");
  }
  if (type == napi_null) {
    if (a.optional) return c10::IValue();
    ThrowArg(env, op, a, "null");
  }
  switch (a.kind) {
    case Kind::Tensor: return TensorArg(env, st, op, a, v);
    case Kind::Int: return c10::IValue(ToInt(env, op, a, v, nullptr));
    case Kind::ScalarType: {
      int64_t c = ToInt(env, op, a, v, nullptr);
      if (c < 0 || c >= int64_t(c10::NumScalarTypes)) ThrowArg(env, op, a, "unknown dtype code " + std::to_string(c));
      return c10::IValue(c);
    }
    case Kind::Layout: {
      int64_t c = ToInt(env, op, a, v, nullptr);
      if (c < 0 || c >= int64_t(c10::Layout::NumOptions)) ThrowArg(env, op, a, "unknown layout code " + std::to_string(c));
      return c10::IValue(c);
    }
    case Kind::MemoryFormat: {
      int64_t c = ToInt(env, op, a, v, nullptr);
      if (c < 0 || c >= int64_t(c10::MemoryFormat::NumOptions)) ThrowArg(env, op, a, "unknown memory format code " + std::to_string(c));
      return c10::IValue(c);
    }
    case Kind::Float:
      if (type != napi_number) ThrowArg(env, op, a, JsTypeName(v));
      return c10::IValue(v.As<Napi::Number>().DoubleValue());
    case Kind::Bool:
      if (type != napi_boolean) ThrowArg(env, op, a, JsTypeName(v));
      return c10::IValue(v.As<Napi::Boolean>().Value());
    case Kind::Scalar:
      if (type == napi_number) return c10::IValue(ToScalar(v.As<Napi::Number>().DoubleValue()));
      if (type == napi_boolean) return c10::IValue(c10::Scalar(v.As<Napi::Boolean>().Value()));
      ThrowArg(env, op, a, JsTypeName(v));
    case Kind::String:
      if (type != napi_string) ThrowArg(env, op, a, JsTypeName(v));
      return c10::IValue(v.As<Napi::String>().Utf8Value());
    case Kind::Device: {
      if (type != napi_string) ThrowArg(env, op, a, JsTypeName(v));
      std::string d = v.As<Napi::String>().Utf8Value();
      try {
        return c10::IValue(c10::Device(d));
      } catch (const c10::Error&) {
        ThrowArg(env, op, a, "'" + d + "', which is not a device");
      }
    }
    case Kind::Generator: {
      if (type != napi_number) ThrowArg(env, op, a, JsTypeName(v));
      int64_t g = v.As<Napi::Number>().Int64Value();
      if (g < 0 || g >= int64_t(st.generators.size()))
        ThrowTorchError(env, op.name, "argument '" + a.name + "' is not a generator handle");
      return c10::IValue(st.generators[g]);
    }
    default: break;
  }
  // Lists. A bare number where an int[] is expected broadcasts, as in Python (stride=2).
  if (a.kind == Kind::IntList && type == napi_number) return IntList(env, op, a, {ToInt(env, op, a, v, nullptr)});
  if (type != napi_object || !v.IsArray()) ThrowArg(env, op, a, JsTypeName(v));
  Napi::Array arr = v.As<Napi::Array>();
  uint32_t n = arr.Length();
  switch (a.kind) {
    case Kind::IntList: {
      std::vector<int64_t> out(n);
      for (uint32_t i = 0; i < n; i++) out[i] = ToInt(env, op, a, arr[i], "an array holding");
      return IntList(env, op, a, std::move(out));
    }
    case Kind::FloatList: {
      std::vector<double> out(n);
      for (uint32_t i = 0; i < n; i++) {
        Napi::Value e = arr[i];
        if (!e.IsNumber()) ThrowArg(env, op, a, std::string("an array holding ") + JsTypeName(e));
        out[i] = e.As<Napi::Number>().DoubleValue();
      }
      return c10::IValue(out);
    }
    case Kind::BoolList: {
      c10::List<bool> out;
      for (uint32_t i = 0; i < n; i++) {
        Napi::Value e = arr[i];
        if (!e.IsBoolean()) ThrowArg(env, op, a, std::string("an array holding ") + JsTypeName(e));
        out.push_back(e.As<Napi::Boolean>().Value());
      }
      return c10::IValue(out);
    }
    case Kind::ScalarList: {
      std::vector<c10::Scalar> out;
      out.reserve(n);
      for (uint32_t i = 0; i < n; i++) {
        Napi::Value e = arr[i];
        if (e.IsBoolean()) out.push_back(c10::Scalar(e.As<Napi::Boolean>().Value()));
        else if (e.IsNumber()) out.push_back(ToScalar(e.As<Napi::Number>().DoubleValue()));
        else ThrowArg(env, op, a, std::string("an array holding ") + JsTypeName(e));
      }
      return c10::IValue(out);
    }
    case Kind::TensorList: {
      std::vector<at::Tensor> out;
      out.reserve(n);
      for (uint32_t i = 0; i < n; i++) out.push_back(TensorArg(env, st, op, a, arr[i], i));
      return c10::IValue(out);
    }
    case Kind::OptTensorList: {
      c10::List<c10::optional<at::Tensor>> out;
      for (uint32_t i = 0; i < n; i++) {
        Napi::Value e = arr[i];
        if (e.IsNull() || e.IsUndefined()) out.push_back(c10::nullopt);
        else out.push_back(TensorArg(env, st, op, a, e, i));
      }
      return c10::IValue(out);
    }
    default:
      ThrowTorchError(env, op.name, "argument '" + a.name + "' has type " + a.typeName +
                                        ", which this binding does not support");
  }
}

Napi::Value ToJs(Napi::Env env, State& st, c10::IValue&& v) {
  if (v.isTensor()) {
    at::Tensor t = std::move(v).toTensor();
    if (!t.defined()) return env.Null();
    return Napi::Number::New(env, st.tensors.Put(env, std::move(t)));
  }
  if (v.isNone()) return env.Null();
  if (v.isInt()) return Napi::Number::New(env, double(v.toInt()));
  if (v.isDouble()) return Napi::Number::New(env, v.toDouble());
  if (v.isBool()) return Napi::Boolean::New(env, v.toBool());
  if (v.isString()) return Napi::String::New(env, v.toStringRef());
  if (v.isTensorList()) {
    auto list = v.toTensorList();
    Napi::Array out = Napi::Array::New(env, list.size());
    for (size_t i = 0; i < list.size(); i++) out[i] = ToJs(env, st, c10::IValue(list.get(i)));
    return out;
  }
  if (v.isTuple()) {
    const auto& elems = v.toTupleRef().elements();
    Napi::Array out = Napi::Array::New(env, elems.size());
    for (size_t i = 0; i < elems.size(); i++) out[i] = ToJs(env, st, c10::IValue(elems[i]));
    return out;
  }
  if (v.isList()) {  // int[], float[], bool[] and other lists, element by element
    auto list = v.toListRef();
    Napi::Array out = Napi::Array::New(env, list.size());
    for (size_t i = 0; i < list.size(); i++) out[i] = ToJs(env, st, c10::IValue(list[i]));
    return out;
  }
  throw std::runtime_error("the operator returned a " + v.tagKind() + ", which is not supported");
}

// ---- arguments that kernels do not check ----
//
// Calling every operator of this LibTorch with extreme arguments (out-of-range, negative, NaN and
// infinite indices, sizes and scales; test/op_property.test.ts keeps the exposed ones covered)
// shows that the public ATen kernels check their index arguments, and that these do not:
// torchvision's RoI ops read `rois[:, 0]` as a batch index unchecked (out of range: a segfault, or
// garbage read from other memory), deform_conv2d dereferences NaN offsets, searchsorted trusts
// its sorter. Their arguments are checked here, before the kernel, and a bad one is a TorchError
// naming the op and the argument. Operators that only LibTorch and autograd call (a leading
// underscore, or a backward formula) trust their callers wholesale: callOp refuses them
// (InternalOp), apart from the fused optimizer and resize ops the facade uses, which check.

[[noreturn]] void ThrowCheck(Napi::Env env, const OpInfo& op, const std::string& arg, const std::string& why) {
  ThrowTorchError(env, op.name, "argument '" + arg + "' " + why);
}

// A tensor's values on the host as doubles (a copy; one device-to-host transfer for CUDA tensors).
at::Tensor HostDoubles(const at::Tensor& t) { return t.detach().to(at::kCPU, at::kDouble).contiguous(); }

bool AllFinite(const at::Tensor& t) {
  if (!t.defined() || !t.is_floating_point() || t.numel() == 0) return true;
  return t.detach().isfinite().all().item<bool>();
}

// How many times over an adaptive-sampling RoI op may sample its input per RoI: a legitimate box
// lies in or near the feature map; one of 1e7 pixels would sample ~1e14 points (hours, in one
// uninterruptible call).
constexpr double kMaxSamplingPasses = 64;

std::string Size(int64_t h, int64_t w) { return std::to_string(h) + "x" + std::to_string(w); }

// roi_align, ps_roi_align, roi_pool, ps_roi_pool: (input, rois, spatial_scale, pooled_height,
// pooled_width[, sampling_ratio]).
void CheckRois(Napi::Env env, const OpInfo& op, const torch::jit::Stack& a, bool sampling) {
  const at::Tensor& input = a[0].toTensor();
  const at::Tensor& rois = a[1].toTensor();
  const double scale = a[2].toDouble();
  const int64_t ph = a[3].toInt(), pw = a[4].toInt();
  if (!std::isfinite(scale)) ThrowCheck(env, op, "spatial_scale", "must be finite, got " + NumberText(scale));
  // The kernels index with int and divide channels by ph * pw.
  if (ph < 1 || pw < 1 || ph > 65536 || pw > 65536)
    ThrowCheck(env, op, ph < 1 || ph > 65536 ? "pooled_height" : "pooled_width",
               "must be in [1, 65536], got " + std::to_string(ph < 1 || ph > 65536 ? ph : pw));
  if (input.dim() != 4 || rois.dim() != 2 || rois.size(1) != 5) return;  // the kernel's own checks name these
  const int64_t n = input.size(0), height = input.size(2), width = input.size(3);
  const int64_t ratio = sampling ? a[5].toInt() : 0;
  const double budget = kMaxSamplingPasses * double(std::max<int64_t>(height * width, ph * pw));
  if (sampling && ratio > 0 && double(ph) * pw * ratio * ratio > budget)
    ThrowCheck(env, op, "sampling_ratio", "is " + std::to_string(ratio) + ": " + std::to_string(ratio) + "x" +
                                              std::to_string(ratio) + " samples per bin would pass over the " + Size(height, width) +
                                              " input more than " + NumberText(kMaxSamplingPasses) + " times");
  const at::Tensor host = HostDoubles(rois);
  const double* r = host.data_ptr<double>();
  for (int64_t k = 0; k < host.size(0); k++, r += 5) {
    const std::string row = " in row " + std::to_string(k);
    if (!(r[0] >= 0 && r[0] < double(n)))
      ThrowCheck(env, op, "rois", "has batch index " + NumberText(r[0]) + row + ", outside [0, " + std::to_string(n) +
                                     ") for an input of " + std::to_string(n) + (n == 1 ? " image" : " images"));
    for (int c = 1; c < 5; c++)
      if (!std::isfinite(r[c])) ThrowCheck(env, op, "rois", "has a non-finite coordinate (" + NumberText(r[c]) + ")" + row);
    if (sampling && ratio <= 0) {
      // The kernels' adaptive grid: ceil(roi extent / pooled size) samples per bin and axis.
      const double h = std::abs(r[4] - r[2]) * scale, w = std::abs(r[3] - r[1]) * scale;
      if (double(ph) * pw * std::max(std::ceil(h / double(ph)), 1.0) * std::max(std::ceil(w / double(pw)), 1.0) > budget)
        ThrowCheck(env, op, "rois", "has a box of " + NumberText(w) + "x" + NumberText(h) + " input pixels" + row +
                                       ": adaptive sampling (sampling_ratio <= 0) would pass over the " + Size(height, width) +
                                       " input more than " + NumberText(kMaxSamplingPasses) + " times");
    }
  }
}

void CheckRoiAlign(Napi::Env env, const OpInfo& op, const torch::jit::Stack& a) { CheckRois(env, op, a, true); }
void CheckRoiPool(Napi::Env env, const OpInfo& op, const torch::jit::Stack& a) { CheckRois(env, op, a, false); }

// deform_conv2d(input, weight, offset, mask, bias, ..., use_mask): bilinear sampling at a NaN
// offset computes a NaN index.
void CheckDeformConv(Napi::Env env, const OpInfo& op, const torch::jit::Stack& a) {
  if (!AllFinite(a[2].toTensor())) ThrowCheck(env, op, "offset", "holds NaN or infinite values");
  if (a.back().toBool() && !AllFinite(a[3].toTensor())) ThrowCheck(env, op, "mask", "holds NaN or infinite values");
}

// searchsorted(sorted_sequence, self | scalar, ..., sorter): the kernel gathers through `sorter`.
void CheckSearchsorted(Napi::Env env, const OpInfo& op, const torch::jit::Stack& a) {
  const c10::IValue& sorter = a.back();
  if (!sorter.isTensor()) return;
  const at::Tensor& seq = a[0].toTensor();
  const at::Tensor& s = sorter.toTensor();
  if (s.numel() == 0 || seq.dim() == 0 || s.is_floating_point() || s.is_complex()) return;
  const int64_t n = seq.size(-1);
  const auto [lo, hi] = s.detach().aminmax();
  const int64_t min = lo.item<int64_t>(), max = hi.item<int64_t>();
  if (min < 0 || max >= n)
    ThrowCheck(env, op, "sorter", "holds index " + std::to_string(min < 0 ? min : max) + ", outside [0, " + std::to_string(n) +
                                      ") for a sorted_sequence of " + std::to_string(n) + " values per row");
}

// choose_qparams_optimized(input, numel, n_bins, ratio, bit_width): reads `numel` elements of input.
void CheckChooseQparams(Napi::Env env, const OpInfo& op, const torch::jit::Stack& a) {
  const int64_t numel = a[1].toInt();
  if (numel < 0 || numel > a[0].toTensor().numel())
    ThrowCheck(env, op, "numel", "is " + std::to_string(numel) + ", outside [0, " + std::to_string(a[0].toTensor().numel()) + "] (the input's elements)");
  if (a[2].toInt() < 1) ThrowCheck(env, op, "n_bins", "must be positive, got " + std::to_string(a[2].toInt()));
}

// native_channel_shuffle(self, groups): divides by groups and by channels / groups.
void CheckGroups(Napi::Env env, const OpInfo& op, const torch::jit::Stack& a) {
  const at::Tensor& self = a[0].toTensor();
  const int64_t channels = self.dim() > 1 ? self.size(1) : 1, groups = a[1].toInt();
  if (groups < 1 || groups > std::max<int64_t>(channels, 1))
    ThrowCheck(env, op, "groups", "must be in [1, " + std::to_string(std::max<int64_t>(channels, 1)) + "] (the channels), got " + std::to_string(groups));
}

// align_tensors(tensors): reads the first.
void CheckNonEmptyList(Napi::Env env, const OpInfo& op, const torch::jit::Stack& a) {
  if (a[0].toListRef().empty()) ThrowCheck(env, op, op.args[0].name, "must hold at least one tensor");
}

// binomial(count, prob): its sampler loops until it draws an acceptable value, forever for a NaN
// or negative count or a probability outside [0, 1].
void CheckBinomial(Napi::Env env, const OpInfo& op, const torch::jit::Stack& a) {
  const at::Tensor& count = a[0].toTensor();
  const at::Tensor& prob = a[1].toTensor();
  if (count.numel() && (!AllFinite(count) || count.detach().min().item<double>() < 0))
    ThrowCheck(env, op, "count", "must hold finite values >= 0");
  if (prob.numel() && !(prob.detach().min().item<double>() >= 0 && prob.detach().max().item<double>() <= 1))
    ThrowCheck(env, op, "prob", "must hold values in [0, 1]");
}

// special_*_polynomial_*(x, n): loops n times per element (hours for n = 2^40).
constexpr double kMaxPolynomialDegree = 1 << 20;
void CheckPolynomialDegree(Napi::Env env, const OpInfo& op, const torch::jit::Stack& a) {
  const c10::IValue& n = a[1];
  double most = 0;
  if (n.isTensor()) {
    const at::Tensor& t = n.toTensor();
    if (t.numel() == 0) return;
    if (!AllFinite(t)) ThrowCheck(env, op, "n", "holds NaN or infinite degrees");
    most = t.detach().abs().max().item<double>();
  } else if (n.isScalar()) {
    most = std::abs(n.toScalar().toDouble());
  }
  if (!(most <= kMaxPolynomialDegree))
    ThrowCheck(env, op, "n", "holds degree " + NumberText(most) + ", beyond " + NumberText(kMaxPolynomialDegree) +
                                 " (the kernel loops once per degree for each element)");
}

ArgCheck ArgCheckFor(const std::string& name) {
  static const std::unordered_map<std::string, ArgCheck> checks = {
      {"torchvision::roi_align", CheckRoiAlign},   {"torchvision::ps_roi_align", CheckRoiAlign},
      {"torchvision::roi_pool", CheckRoiPool},     {"torchvision::ps_roi_pool", CheckRoiPool},
      {"torchvision::deform_conv2d", CheckDeformConv},
      {"aten::searchsorted.Tensor", CheckSearchsorted}, {"aten::searchsorted.Scalar", CheckSearchsorted},
      {"aten::choose_qparams_optimized", CheckChooseQparams}, {"aten::native_channel_shuffle", CheckGroups},
      {"aten::align_tensors", CheckNonEmptyList}, {"aten::binomial", CheckBinomial},
  };
  auto it = checks.find(name);
  if (it != checks.end()) return it->second;
  if (name.rfind("aten::special_", 0) == 0 && name.find("_polynomial_") != std::string::npos) return CheckPolynomialDegree;
  return nullptr;
}

// Why callOp does not reach an operator, or "" when it may.
std::string Refusal(const std::string& name) {
  const bool internal = (!name.empty() && name[0] == '_') || name.find("_backward") != std::string::npos;
  if (internal && name.rfind("_foreach_", 0) != 0 && name != "_upsample_bilinear2d_aa")
    return "an internal operator (LibTorch and autograd call it with arguments they made; its kernel does not check "
           "them, and out-of-range values crash the process): call the public operator that uses it";
  // Their weights are fbgemm-packed structures passed as plain tensors and read unchecked.
  if (name.rfind("quantized_", 0) == 0 && name.size() > 5 && name.compare(name.size() - 5, 5, "_cell") == 0)
    return "a quantized RNN cell, whose packed weights arrive as plain tensors that the kernel reads unchecked "
           "(any other tensor crashes the process)";
  return "";
}

// op(name, overload) -> index for call(); resolving once keeps the per-call cost to a table lookup.
Napi::Value Op(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  State& st = GetState(env);
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsString())
    ThrowTorchError(env, "op", "op(name, overload) expects two strings");
  std::string name = info[0].As<Napi::String>();
  std::string overload = info[1].As<Napi::String>();
  std::string key = overload.empty() ? name : name + "." + overload;
  auto it = st.opIndex.find(key);
  if (it != st.opIndex.end()) return Napi::Number::New(env, it->second);
  auto handle = c10::Dispatcher::singleton().findSchema({name, overload});
  if (!handle) ThrowTorchError(env, key, "no such operator in this LibTorch (name and overload must match its schema)");
  const size_t colons = name.find("::");
  const std::string refusal = colons == std::string::npos ? "" : Refusal(name.substr(colons + 2));
  if (!refusal.empty()) ThrowTorchError(env, key, "not callable: " + refusal);
  const c10::FunctionSchema& schema = handle->schema();
  std::ostringstream text;
  text << schema;
  OpInfo op{*handle, key, text.str(), {}, schema.returns().size(), "", "", false, ArgCheckFor(key)};
  for (const auto& a : schema.arguments()) {
    // The real type: type() says int for a ScalarType, Layout or MemoryFormat, whose codes index
    // tables unchecked (softmax with dtype -1 crashed), so they need the range checks of their kind.
    c10::TypePtr type = a.real_type();
    bool optional = type->kind() == c10::TypeKind::OptionalType;
    if (optional) type = type->expectRef<c10::OptionalType>().getElementType();
    Kind k = KindOf(type);
    const int32_t length = k == Kind::IntList && a.N() ? *a.N() : 0;
    const bool emptyDefault = a.default_value() && a.default_value()->isList() && a.default_value()->toListRef().empty();
    std::string typeName = a.real_type()->str();
    if (length > 0) typeName.insert(typeName.find("[]") + 1, std::to_string(length));
    op.args.push_back({a.name(), k, optional, a.default_value(), typeName, length, emptyDefault});
    op.argKinds += k == Kind::Tensor ? 't' : (k == Kind::TensorList || k == Kind::OptTensorList) ? 'T' : 'v';
  }
  for (const auto& r : schema.returns()) {
    Kind k = KindOf(r.type());
    op.returnKinds += k == Kind::Tensor ? 't' : k == Kind::TensorList ? 'T' : 'v';
  }
  const auto& rets = schema.returns();
  op.returnsSelf = rets.size() == 1 && rets[0].alias_info() && rets[0].alias_info()->isWrite() &&
                   !schema.arguments().empty() && schema.arguments()[0].alias_info() &&
                   schema.overload_name() != "out";
  int32_t index = int32_t(st.ops.size());
  st.ops.push_back(std::move(op));
  st.opIndex.emplace(key, index);
  return Napi::Number::New(env, index);
}

// opInfo(index) -> [name, schema, returnKinds, returnsSelf, argKinds], for the generic callOp in JS.
Napi::Value OpInfoJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  State& st = GetState(env);
  int32_t index = info[0].IsNumber() ? info[0].As<Napi::Number>().Int32Value() : -1;
  if (index < 0 || index >= int32_t(st.ops.size())) ThrowTorchError(env, "opInfo", "not an index from op()");
  const OpInfo& op = st.ops[index];
  Napi::Array out = Napi::Array::New(env, 5);
  out[0u] = Napi::String::New(env, op.name);
  out[1u] = Napi::String::New(env, op.schema);
  out[2u] = Napi::String::New(env, op.returnKinds);
  out[3u] = Napi::Boolean::New(env, op.returnsSelf);
  out[4u] = Napi::String::New(env, op.argKinds);
  return out;
}

// call(index, ...args): one boxed dispatcher call.
Napi::Value Call(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  State& st = GetState(env);
  int32_t index = -1;
  if (info.Length() == 0 || napi_get_value_int32(env, info[0], &index) != napi_ok) index = -1;
  if (index < 0 || index >= int32_t(st.ops.size()))
    ThrowTorchError(env, "call", "the first argument must be an index from op()");
  const OpInfo& op = st.ops[index];
  size_t given = info.Length() - 1;
  if (given > op.args.size())
    ThrowTorchError(env, op.name, "takes " + std::to_string(op.args.size()) + " arguments, got " +
                                      std::to_string(given) + " (schema: " + op.schema + ")");
  torch::jit::Stack& stack = st.stack;
  stack.clear();
  struct Clear {  // drop argument and result references on every exit, errors included
    torch::jit::Stack& s;
    ~Clear() { s.clear(); }
  } clearOnExit{stack};
  Guard(env, op.name, [&] {
    for (size_t i = 0; i < op.args.size(); i++) {
      bool missing = i >= given;
      stack.push_back(Convert(env, st, op, op.args[i], missing ? Napi::Value() : info[i + 1], missing));
    }
    if (op.check) op.check(env, op, stack);
    op.handle.callBoxed(&stack);
  });
  if (op.returnsSelf) return info[1];
  return Guard(env, op.name, [&]() -> Napi::Value {
    if (op.numReturns == 0) return env.Undefined();
    if (stack.size() == 1) return ToJs(env, st, std::move(stack[0]));
    Napi::Array out = Napi::Array::New(env, stack.size());
    for (size_t i = 0; i < stack.size(); i++) out[i] = ToJs(env, st, std::move(stack[i]));
    return out;
  });
}

// ---- data in and out ----

struct DtypeBuffer {
  at::ScalarType dtype;
  napi_typedarray_type array;
  const char* arrayName;
};

// Which TypedArray carries which dtype's bytes; half types travel as their raw 16-bit patterns.
constexpr DtypeBuffer kBuffers[] = {
    {at::kFloat, napi_float32_array, "Float32Array"}, {at::kDouble, napi_float64_array, "Float64Array"},
    {at::kHalf, napi_uint16_array, "Uint16Array"},    {at::kBFloat16, napi_uint16_array, "Uint16Array"},
    {at::kLong, napi_bigint64_array, "BigInt64Array"}, {at::kInt, napi_int32_array, "Int32Array"},
    {at::kByte, napi_uint8_array, "Uint8Array"},      {at::kBool, napi_uint8_array, "Uint8Array"},
};

const DtypeBuffer& BufferFor(at::ScalarType t) {
  for (const auto& b : kBuffers)
    if (b.dtype == t) return b;
  throw std::runtime_error(std::string("dtype ") + c10::toString(t) + " has no TypedArray form");
}

std::vector<int64_t> ShapeArg(Napi::Env env, const Napi::Value& v, const char* op) {
  if (!v.IsArray()) ThrowTorchError(env, op, std::string("shape must be an array of non-negative integers, got ") + JsTypeName(v));
  Napi::Array arr = v.As<Napi::Array>();
  std::vector<int64_t> shape(arr.Length());
  for (uint32_t i = 0; i < arr.Length(); i++) {
    Napi::Value e = arr[i];
    double d = e.IsNumber() ? e.As<Napi::Number>().DoubleValue() : -1;
    if (!(d >= 0 && std::floor(d) == d && d <= 9.007199254740991e15))
      ThrowTorchError(env, op, "shape must be an array of non-negative integers, got " +
                                   (e.IsNumber() ? NumberText(d) : std::string(JsTypeName(e))) + " at [" + std::to_string(i) + "]");
    shape[i] = int64_t(d);
  }
  return shape;
}

at::ScalarType DtypeArg(Napi::Env env, const Napi::Value& v, const char* op) {
  int code = v.IsNumber() ? v.As<Napi::Number>().Int32Value() : -1;
  for (const auto& b : kBuffers)
    if (int(b.dtype) == code) return b.dtype;
  ThrowTorchError(env, op, "unsupported dtype code " + (v.IsNumber() ? NumberText(v.As<Napi::Number>().DoubleValue()) : JsTypeName(v)));
}

const char* TypedArrayName(napi_typedarray_type t) {
  switch (t) {
    case napi_int8_array: return "Int8Array";
    case napi_uint8_array: return "Uint8Array";
    case napi_uint8_clamped_array: return "Uint8ClampedArray";
    case napi_int16_array: return "Int16Array";
    case napi_uint16_array: return "Uint16Array";
    case napi_int32_array: return "Int32Array";
    case napi_uint32_array: return "Uint32Array";
    case napi_float32_array: return "Float32Array";
    case napi_float64_array: return "Float64Array";
    case napi_bigint64_array: return "BigInt64Array";
    case napi_biguint64_array: return "BigUint64Array";
    default: return "TypedArray";
  }
}

// fromBuffer(typedArray, shape, dtypeCode) -> handle of a new CPU tensor holding a copy.
Napi::Value FromBuffer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* op = "fromBuffer";
  if (info.Length() < 3 || !info[0].IsTypedArray())
    ThrowTorchError(env, op, std::string("data must be a TypedArray, got ") + JsTypeName(info[0]));
  auto arr = info[0].As<Napi::TypedArray>();
  std::vector<int64_t> shape = ShapeArg(env, info[1], op);
  at::ScalarType dtype = DtypeArg(env, info[2], op);
  const DtypeBuffer& buf = Guard(env, op, [&]() -> const DtypeBuffer& { return BufferFor(dtype); });
  if (arr.TypedArrayType() != buf.array)
    ThrowTorchError(env, op, std::string("dtype ") + c10::toString(dtype) + " needs a " + buf.arrayName + ", got a " +
                                 TypedArrayName(arr.TypedArrayType()));
  size_t itemsize = c10::elementSize(dtype);
  uint64_t numel = 1;
  bool overflow = false;
  for (auto s : shape) overflow |= __builtin_mul_overflow(numel, uint64_t(s), &numel);
  if (overflow || numel * itemsize != arr.ByteLength())
    ThrowTorchError(env, op, "shape [" + c10::Join(",", shape) + "] does not match the data's " +
                                 std::to_string(arr.ByteLength() / itemsize) + " elements");
  auto* src = static_cast<const uint8_t*>(arr.ArrayBuffer().Data()) + arr.ByteOffset();
  at::Tensor t = Guard(env, op, [&] { return at::empty(shape, at::TensorOptions().dtype(dtype)); });
  if (numel > 0) std::memcpy(t.data_ptr(), src, arr.ByteLength());
  if (dtype == at::kBool) {
    // A bool byte other than 0/1 is undefined behaviour in LibTorch's kernels: normalise.
    auto* p = static_cast<uint8_t*>(t.data_ptr());
    for (uint64_t i = 0; i < numel; i++) p[i] = p[i] != 0;
  }
  return Napi::Number::New(env, Tensors(env).Put(env, std::move(t)));
}

// fromDecoded(uint8Array, shape) -> handle of a uint8 CPU tensor over a decoded image's pixels
// (decodeImage's `data`, native/image.cc): it shares their memory instead of copying it, and
// keeps it alive as long as it lives. Any other Uint8Array (or a view of part of one) is copied,
// as fromBuffer does.
Napi::Value FromDecoded(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* op = "fromDecoded";
  if (info.Length() < 2 || !info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
    ThrowTorchError(env, op, std::string("data must be a Uint8Array, got ") + JsTypeName(info[0]));
  auto arr = info[0].As<Napi::Uint8Array>();
  std::vector<int64_t> shape = ShapeArg(env, info[1], op);
  uint64_t numel = 1;
  bool overflow = false;
  for (auto s : shape) overflow |= __builtin_mul_overflow(numel, uint64_t(s), &numel);
  if (overflow || numel != arr.ByteLength())
    ThrowTorchError(env, op, "shape [" + c10::Join(",", shape) + "] does not match the data's " +
                                 std::to_string(arr.ByteLength()) + " elements");
  auto* src = static_cast<uint8_t*>(arr.ArrayBuffer().Data()) + arr.ByteOffset();
  std::shared_ptr<void> owner = numel > 0 ? soco_image::SharedPixels(src, numel) : nullptr;
  at::Tensor t = Guard(env, op, [&] {
    const auto opts = at::TensorOptions().dtype(at::kByte);
    if (owner) return at::from_blob(src, shape, [owner](void*) mutable { owner.reset(); }, opts);
    at::Tensor c = at::empty(shape, opts);
    if (numel > 0) std::memcpy(c.data_ptr(), src, numel);
    return c;
  });
  return Napi::Number::New(env, Tensors(env).Put(env, std::move(t)));
}

// toBuffer(handle) -> TypedArray holding a contiguous CPU copy.
Napi::Value ToBuffer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* op = "toBuffer";
  const at::Tensor& t = Tensors(env).Get(env, info[0], op, "tensor");
  return Guard(env, op, [&]() -> Napi::Value {
    napi_typedarray_type type = BufferFor(t.scalar_type()).array;
    at::Tensor c = t.detach().to(at::kCPU).contiguous();
    size_t bytes = c.numel() * c.element_size();
    auto buffer = Napi::ArrayBuffer::New(env, bytes);
    if (bytes) std::memcpy(buffer.Data(), c.data_ptr(), bytes);
    napi_value out;
    NAPI_THROW_IF_FAILED(env, napi_create_typedarray(env, type, c.numel(), buffer, 0, &out), Napi::Value());
    return Napi::Value(env, out);
  });
}

Napi::Value Item(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const at::Tensor& t = Tensors(env).Get(env, info[0], "item", "tensor");
  return Guard(env, "item", [&]() -> Napi::Value {
    c10::Scalar s = t.item();
    if (s.isBoolean()) return Napi::Boolean::New(env, s.toBool());
    if (s.isIntegral(false)) return Napi::Number::New(env, double(s.toLong()));
    return Napi::Number::New(env, s.toDouble());
  });
}

// meta(handle) -> [dtypeCode, device, flags, ...shape]: one call for what JS caches.
// flags: 1 requires grad, 2 leaf, 4 contiguous.
Napi::Value Meta(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const at::Tensor& t = Tensors(env).Get(env, info[0], "meta", "tensor");
  // Guarded: layouts that callOp can produce (sparse, ...) throw from is_contiguous() and friends.
  return Guard(env, "meta", [&]() -> Napi::Value {
    int64_t dim = t.dim();
    Napi::Array out = Napi::Array::New(env, 3 + dim);
    out[0u] = Napi::Number::New(env, int(t.scalar_type()));
    out[1u] = Napi::String::New(env, t.device().str());
    int flags = (t.requires_grad() ? 1 : 0) | (t.is_leaf() ? 2 : 0) | (t.is_contiguous() ? 4 : 0);
    out[2u] = Napi::Number::New(env, flags);
    for (int64_t i = 0; i < dim; i++) out[uint32_t(3 + i)] = Napi::Number::New(env, double(t.size(i)));
    return out;
  });
}

Napi::Value Free(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t id;
  if (napi_get_value_int32(env, info[0], &id) != napi_ok) ThrowTorchError(env, "free", "handle must be a number");
  Tensors(env).Free(env, id);
  return env.Undefined();
}

// freeMany(Int32Array of handles): what tidy() frees at the end of a scope, in one call.
Napi::Value FreeMany(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array)
    ThrowTorchError(env, "freeMany", "handles must be an Int32Array");
  Napi::Int32Array ids = info[0].As<Napi::Int32Array>();
  TensorTable& tt = Tensors(env);
  for (size_t i = 0; i < ids.ElementLength(); i++) tt.Free(env, ids[i]);
  return env.Undefined();
}

// dup(handle) -> a second handle to the same tensor (not a view: same leaf, grad and flags), so
// that every call returns a handle the caller may dispose on its own.
Napi::Value Dup(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  TensorTable& tt = Tensors(env);
  at::Tensor t = tt.Get(env, info[0], "dup", "tensor");
  return Napi::Number::New(env, tt.Put(env, std::move(t)));
}

Napi::Value LiveCount(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), double(Tensors(info.Env()).Live()));
}

// liveBytes() -> bytes of the distinct storages referenced by live handles.
Napi::Value LiveBytes(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), double(Tensors(info.Env()).Bytes()));
}

// externalMemory() -> the external memory V8 has been told about (ours and everyone's): what
// drives its GC heuristics, for tests of the backstop.
Napi::Value ExternalMemory(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), double(Napi::MemoryManagement::AdjustExternalMemory(info.Env(), 0)));
}

// ---- autograd ----

Napi::Value SetRequiresGrad(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const at::Tensor& t = Tensors(env).Get(env, info[0], "requiresGrad_", "tensor");
  if (!info[1].IsBoolean()) ThrowTorchError(env, "requiresGrad_", std::string("requiresGrad must be a boolean, got ") + JsTypeName(info[1]));
  Guard(env, "requiresGrad_", [&] { const_cast<at::Tensor&>(t).set_requires_grad(info[1].As<Napi::Boolean>()); });
  return env.Undefined();
}

Napi::Value Grad(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const at::Tensor& t = Tensors(env).Get(env, info[0], "grad", "tensor");
  at::Tensor g = Guard(env, "grad", [&] { return t.grad(); });
  if (!g.defined()) return env.Null();
  return Napi::Number::New(env, Tensors(env).Put(env, std::move(g)));
}

// Drops the accumulated gradient (set_to_none semantics, as PyTorch's zero_grad now defaults to).
Napi::Value ClearGrad(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const at::Tensor& t = Tensors(env).Get(env, info[0], "clearGrad", "tensor");
  Guard(env, "clearGrad", [&] { const_cast<at::Tensor&>(t).mutable_grad().reset(); });
  return env.Undefined();
}

// backward(outputs[], grads[] | null, retainGraph)
Napi::Value Backward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* op = "backward";
  TensorTable& tt = Tensors(env);
  if (!info[0].IsArray()) ThrowTorchError(env, op, "outputs must be an array of tensors");
  std::vector<at::Tensor> outputs, grads;
  Napi::Array outs = info[0].As<Napi::Array>();
  for (uint32_t i = 0; i < outs.Length(); i++) outputs.push_back(tt.Get(env, outs[i], op, "output " + std::to_string(i)));
  if (info[1].IsArray()) {
    Napi::Array gs = info[1].As<Napi::Array>();
    if (gs.Length() != outs.Length()) ThrowTorchError(env, op, "one gradient per output is needed");
    for (uint32_t i = 0; i < gs.Length(); i++) grads.push_back(tt.Get(env, gs[i], op, "gradient " + std::to_string(i)));
  } else if (!info[1].IsNull() && !info[1].IsUndefined()) {
    ThrowTorchError(env, op, "gradients must be an array of tensors or null");
  }
  bool retain = info[2].IsBoolean() && info[2].As<Napi::Boolean>().Value();
  Guard(env, op, [&] { torch::autograd::backward(outputs, grads, retain); });
  return env.Undefined();
}

Napi::Value SetGradEnabled(const Napi::CallbackInfo& info) {
  bool prev = c10::GradMode::is_enabled();
  if (info[0].IsBoolean()) c10::GradMode::set_enabled(info[0].As<Napi::Boolean>());
  return Napi::Boolean::New(info.Env(), prev);
}

// ---- autocast (mixed precision), torch.autocast's state for one device type ----

#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
// LibTorch 2.4 replaced the per-backend functions by ones taking the device type.
bool AutocastEnabled(bool cuda) { return at::autocast::is_autocast_enabled(cuda ? at::kCUDA : at::kCPU); }
at::ScalarType AutocastDtype(bool cuda) { return at::autocast::get_autocast_dtype(cuda ? at::kCUDA : at::kCPU); }
void SetAutocastState(bool cuda, bool enabled, at::ScalarType dtype) {
  at::autocast::set_autocast_enabled(cuda ? at::kCUDA : at::kCPU, enabled);
  at::autocast::set_autocast_dtype(cuda ? at::kCUDA : at::kCPU, dtype);
}
#else
bool AutocastEnabled(bool cuda) { return cuda ? at::autocast::is_enabled() : at::autocast::is_cpu_enabled(); }
at::ScalarType AutocastDtype(bool cuda) {
  return cuda ? at::autocast::get_autocast_gpu_dtype() : at::autocast::get_autocast_cpu_dtype();
}
void SetAutocastState(bool cuda, bool enabled, at::ScalarType dtype) {
  if (cuda) {
    at::autocast::set_enabled(enabled);
    at::autocast::set_autocast_gpu_dtype(dtype);
  } else {
    at::autocast::set_cpu_enabled(enabled);
    at::autocast::set_autocast_cpu_dtype(dtype);
  }
}
#endif

bool AutocastDeviceArg(Napi::Env env, const Napi::Value& v) {
  std::string d = v.IsString() ? v.As<Napi::String>().Utf8Value() : "";
  if (d != "cpu" && d != "cuda")
    ThrowTorchError(env, "autocast", std::string("device type must be 'cpu' or 'cuda', got ") +
                                         (v.IsString() ? "'" + d + "'" : JsTypeName(v)));
  return d == "cuda";
}

// autocastState(deviceType) -> [enabled, dtypeCode]
Napi::Value AutocastState(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  bool cuda = AutocastDeviceArg(env, info[0]);
  Napi::Array out = Napi::Array::New(env, 2);
  out.Set(0u, Napi::Boolean::New(env, AutocastEnabled(cuda)));
  out.Set(1u, Napi::Number::New(env, int(AutocastDtype(cuda))));
  return out;
}

// setAutocast(deviceType, enabled, dtypeCode, nestingDelta): nestingDelta +1 on entering a
// region, -1 on leaving it; leaving the outermost region drops the cache of casted weights, as
// torch.autocast.__exit__ does (it would otherwise keep a low-precision copy of every parameter).
Napi::Value SetAutocast(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  bool cuda = AutocastDeviceArg(env, info[0]);
  if (!info[1].IsBoolean()) ThrowTorchError(env, "autocast", std::string("enabled must be a boolean, got ") + JsTypeName(info[1]));
  at::ScalarType dtype = DtypeArg(env, info[2], "autocast");
  if (dtype != at::kHalf && dtype != at::kBFloat16 && dtype != at::kFloat)
    ThrowTorchError(env, "autocast", "dtype must be float16, bfloat16 or float32");
  int delta = info[3].IsNumber() ? info[3].As<Napi::Number>().Int32Value() : 0;
  Guard(env, "autocast", [&] {
    SetAutocastState(cuda, info[1].As<Napi::Boolean>(), dtype);
    if (delta > 0) at::autocast::increment_nesting();
    if (delta < 0 && at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  });
  return env.Undefined();
}

// ---- random numbers, threads, devices, libraries ----

uint64_t SeedArg(Napi::Env env, const Napi::Value& v, const char* op) {
  double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1;
  if (!(d >= 0 && std::floor(d) == d && d <= 9.007199254740991e15))
    ThrowTorchError(env, op, "seed must be a non-negative safe integer");
  return uint64_t(d);
}

c10::Device DeviceArg(Napi::Env env, const Napi::Value& v, const char* op) {
  if (!v.IsString()) ThrowTorchError(env, op, std::string("device must be a string, got ") + JsTypeName(v));
  std::string d = v.As<Napi::String>();
  return Guard(env, op, [&] { return c10::Device(d); });
}

at::Generator& GeneratorArg(Napi::Env env, const Napi::Value& v, const char* op) {
  State& st = GetState(env);
  int64_t g = v.IsNumber() ? v.As<Napi::Number>().Int64Value() : -1;
  if (g < 0 || g >= int64_t(st.generators.size())) ThrowTorchError(env, op, "not a generator handle");
  return st.generators[g];
}

Napi::Value ManualSeed(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint64_t seed = SeedArg(env, info[0], "manualSeed");
  Guard(env, "manualSeed", [&] { at::manual_seed(seed); });
  return env.Undefined();
}

// newGenerator(seed, device) -> handle of a new generator of the device's kind (Philox on CUDA,
// mt19937 on CPU): a clone of the default one, so no CUDA headers are needed here.
Napi::Value NewGenerator(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  State& st = GetState(env);
  uint64_t seed = SeedArg(env, info[0], "Generator");
  c10::Device device = info[1].IsUndefined() ? c10::Device(c10::kCPU) : DeviceArg(env, info[1], "Generator");
  at::Generator g = Guard(env, "Generator", [&] {
    at::Generator gen = device.is_cpu() ? at::make_generator<at::CPUGeneratorImpl>(seed)
                                        : at::globalContext().defaultGenerator(device).clone();
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_current_seed(seed);
    return gen;
  });
  st.generators.push_back(std::move(g));
  return Napi::Number::New(env, double(st.generators.size() - 1));
}

// defaultGenerator(device) -> handle sharing the device's default generator (what manualSeed seeds).
Napi::Value DefaultGenerator(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  State& st = GetState(env);
  c10::Device device = DeviceArg(env, info[0], "defaultGenerator");
  at::Generator g = Guard(env, "defaultGenerator", [&] { return at::globalContext().defaultGenerator(device); });
  st.generators.push_back(std::move(g));
  return Napi::Number::New(env, double(st.generators.size() - 1));
}

// generatorState(g) -> handle of a uint8 CPU tensor: the full RNG state, for checkpoints.
Napi::Value GeneratorState(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  at::Generator& g = GeneratorArg(env, info[0], "Generator.getState");
  at::Tensor state = Guard(env, "Generator.getState", [&] {
    std::lock_guard<std::mutex> lock(g.mutex());
    return g.get_state();
  });
  return Napi::Number::New(env, Tensors(env).Put(env, std::move(state)));
}

Napi::Value SetGeneratorState(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  at::Generator& g = GeneratorArg(env, info[0], "Generator.setState");
  const at::Tensor& state = Tensors(env).Get(env, info[1], "Generator.setState", "state");
  Guard(env, "Generator.setState", [&] {
    std::lock_guard<std::mutex> lock(g.mutex());
    g.set_state(state);
  });
  return env.Undefined();
}

// generatorSeed(g, seed?) -> reseeds when a seed is given; returns the current (initial) seed.
Napi::Value GeneratorSeed(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  at::Generator& g = GeneratorArg(env, info[0], "Generator.manualSeed");
  bool set = !info[1].IsUndefined();
  uint64_t seed = set ? SeedArg(env, info[1], "Generator.manualSeed") : 0;
  std::lock_guard<std::mutex> lock(g.mutex());
  if (set) Guard(env, "Generator.manualSeed", [&] { g.set_current_seed(seed); });
  return Napi::Number::New(env, double(g.current_seed()));
}

Napi::Value SetNumThreads(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsUndefined()) {
    double n = info[0].IsNumber() ? info[0].As<Napi::Number>().DoubleValue() : -1;
    // OpenMP would try to start that many threads: bound it instead of letting it abort.
    if (!(n >= 1 && n <= 4096 && std::floor(n) == n))
      ThrowTorchError(env, "setNumThreads", "thread count must be an integer in [1, 4096]");
    at::set_num_threads(int(n));
  }
  return Napi::Number::New(env, at::get_num_threads());
}

Napi::Value CudaDeviceCount(const Napi::CallbackInfo& info) {
  int n = at::detail::getCUDAHooks().hasCUDA() ? at::detail::getCUDAHooks().getNumGPUs() : 0;
  return Napi::Number::New(info.Env(), n);
}

Napi::Value CudaSynchronize(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t index = info[0].IsNumber() ? info[0].As<Napi::Number>().Int64Value() : -1;
  Guard(env, "cuda.synchronize", [&] {
    if (!at::detail::getCUDAHooks().hasCUDA()) throw std::runtime_error("CUDA is not available");
    if (index < 0) index = at::detail::getCUDAHooks().current_device();
    at::detail::getCUDAHooks().deviceSynchronize(index);
  });
  return env.Undefined();
}

#ifdef SOCO_WITH_CUDA
c10::DeviceIndex CudaDeviceArg(Napi::Env env, const Napi::Value& v, const char* op) {
  int n = at::detail::getCUDAHooks().hasCUDA() ? at::detail::getCUDAHooks().getNumGPUs() : 0;
  if (n == 0) ThrowTorchError(env, op, "no CUDA GPU is visible (cuda.isAvailable() is false)");
  double d = v.IsUndefined() ? double(at::detail::getCUDAHooks().current_device()) : v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1;
  if (!(d >= 0 && d < n && std::floor(d) == d))
    ThrowTorchError(env, op, "device index must be an integer in [0, " + std::to_string(n) + ")");
  return c10::DeviceIndex(d);
}
#endif

// cudaMemoryStats(index?) -> {allocated, reserved, peakAllocated, peakReserved} in bytes: the
// caching allocator's counters (torch.cuda.memory_stats' *_bytes.all.current/peak).
Napi::Value CudaMemoryStats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
#ifdef SOCO_WITH_CUDA
  c10::DeviceIndex index = CudaDeviceArg(env, info[0], "cuda.memoryStats");
  auto stats = Guard(env, "cuda.memoryStats", [&] { return c10::cuda::CUDACachingAllocator::getDeviceStats(index); });
  // Index 0 of each StatArray is StatType::AGGREGATE (all pools).
  Napi::Object o = Napi::Object::New(env);
  o.Set("allocated", double(stats.allocated_bytes[0].current));
  o.Set("reserved", double(stats.reserved_bytes[0].current));
  o.Set("peakAllocated", double(stats.allocated_bytes[0].peak));
  o.Set("peakReserved", double(stats.reserved_bytes[0].peak));
  return o;
#else
  ThrowTorchError(env, "cuda.memoryStats", "this LibTorch was built without CUDA");
#endif
}

Napi::Value CudaResetPeakMemoryStats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
#ifdef SOCO_WITH_CUDA
  c10::DeviceIndex index = CudaDeviceArg(env, info[0], "cuda.resetPeakMemoryStats");
  Guard(env, "cuda.resetPeakMemoryStats", [&] { c10::cuda::CUDACachingAllocator::resetPeakStats(index); });
  return env.Undefined();
#else
  ThrowTorchError(env, "cuda.resetPeakMemoryStats", "this LibTorch was built without CUDA");
#endif
}

// backendFlag(name, value?) -> previous value: TF32, determinism and cuDNN autotuning switches.
Napi::Value BackendFlag(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) ThrowTorchError(env, "backendFlag", "name must be a string");
  std::string name = info[0].As<Napi::String>();
  bool set = info[1].IsBoolean();
  bool v = set && info[1].As<Napi::Boolean>().Value();
  auto& ctx = at::globalContext();
  return Guard(env, "backendFlag", [&]() -> Napi::Value {
    bool prev;
    if (name == "allowTF32CuBLAS") {
      prev = ctx.allowTF32CuBLAS();
      if (set) ctx.setAllowTF32CuBLAS(v);
    } else if (name == "allowTF32CuDNN") {
      prev = ctx.allowTF32CuDNN();
      if (set) ctx.setAllowTF32CuDNN(v);
    } else if (name == "deterministicAlgorithms") {
      prev = ctx.deterministicAlgorithms();
      if (set) ctx.setDeterministicAlgorithms(v, false);
    } else if (name == "cudnnBenchmark") {
      prev = ctx.benchmarkCuDNN();
      if (set) ctx.setBenchmarkCuDNN(v);
    } else if (name == "cudnnDeterministic") {
      prev = ctx.deterministicCuDNN();
      if (set) ctx.setDeterministicCuDNN(v);
    } else {
      throw std::runtime_error("unknown flag '" + name + "'");
    }
    return Napi::Boolean::New(env, prev);
  });
}

// loadLibrary(path): dlopen a library that registers operators (torchvision's _C.so).
Napi::Value LoadLibrary(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) ThrowTorchError(env, "loadLibrary", "path must be a string");
  std::string path = info[0].As<Napi::String>();
  if (!dlopen(path.c_str(), RTLD_NOW | RTLD_GLOBAL)) {
    const char* err = dlerror();
    ThrowTorchError(env, "loadLibrary", err ? err : ("cannot load " + path));
  }
  return env.Undefined();
}

Napi::Value HasOp(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString() || !info[1].IsString()) ThrowTorchError(env, "hasOp", "hasOp(name, overload) expects two strings");
  std::string name = info[0].As<Napi::String>();
  std::string overload = info[1].As<Napi::String>();
  return Napi::Boolean::New(env, c10::Dispatcher::singleton().findSchema({name, overload}).has_value());
}

// buildInfo() -> what this addon was compiled against: the LibTorch version its headers state, the
// CUDA runtime version it compiled in (null: a CPU build), the LibTorch's cuDNN, the C++11 ABI.
Napi::Value BuildInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("torch", std::to_string(TORCH_VERSION_MAJOR) + "." + std::to_string(TORCH_VERSION_MINOR) + "." +
                     std::to_string(TORCH_VERSION_PATCH));
#ifdef SOCO_WITH_CUDA
  o.Set("cuda", std::to_string(CUDART_VERSION / 1000) + "." + std::to_string(CUDART_VERSION % 1000 / 10));
  // The cuDNN LibTorch was compiled with (torch.backends.cudnn.version()); no GPU needed to ask.
  auto& hooks = at::detail::getCUDAHooks();
  if (hooks.hasCuDNN()) {
    long v = hooks.versionCuDNN();
    o.Set("cudnn", std::to_string(v / 10000) + "." + std::to_string(v / 100 % 100) + "." + std::to_string(v % 100));
  } else {
    o.Set("cudnn", env.Null());
  }
#else
  o.Set("cuda", env.Null());
  o.Set("cudnn", env.Null());
#endif
  o.Set("cxx11Abi", bool(_GLIBCXX_USE_CXX11_ABI));
  return o;
}

// ---- CPU memory ----

// The memory this process can still get, in bytes: MemAvailable, and the cgroup's limit when it
// sets a lower one (containers, Slurm).
double AvailableBytes() {
  double avail = std::numeric_limits<double>::infinity();
  std::ifstream meminfo("/proc/meminfo");
  for (std::string key; meminfo >> key;) {
    double kb = 0;
    meminfo >> kb;
    if (key == "MemAvailable:") avail = kb * 1024;
    meminfo.ignore(std::numeric_limits<std::streamsize>::max(), '\n');
  }
  std::ifstream max("/sys/fs/cgroup/memory.max"), current("/sys/fs/cgroup/memory.current");
  double limit = 0, used = 0;
  if (max >> limit && current >> used) avail = std::min(avail, limit - used);  // "max" (no limit) fails to parse
  return avail;
}

// LibTorch's CPU allocator with one check: a tensor larger than the memory that is free is
// refused with a TorchError. Linux grants such an allocation (it only refuses more than RAM and
// swap together) and its OOM killer ends some process when the pages are touched: a zeros([2**31])
// in a script would kill the run, or a neighbour's. Allocations under 1 GiB are not checked.
class BoundedCpuAllocator final : public c10::Allocator {
 public:
  explicit BoundedCpuAllocator(c10::Allocator* base) : base_(base) {}
  // LibTorch 2.3 made allocate() non-const and added copy_data(): each version overrides its own.
  c10::DataPtr allocate(size_t n) const { return Checked(n); }
  c10::DataPtr allocate(size_t n) { return Checked(n); }
  void copy_data(void* dest, const void* src, std::size_t count) const { std::memcpy(dest, src, count); }
  c10::DeleterFnPtr raw_deleter() const override { return base_->raw_deleter(); }

 private:
  c10::DataPtr Checked(size_t n) const {
    if (n >= (size_t(1) << 30)) {
      const double avail = AvailableBytes();
      const auto gib = [](double b) {
        std::ostringstream s;
        s.setf(std::ios::fixed);
        s.precision(1);
        s << b / double(1 << 30) << " GiB";
        return s.str();
      };
      TORCH_CHECK(double(n) <= avail, "a CPU tensor of ", gib(double(n)), " is more than the ", gib(avail),
                  " of memory available (the kernel would kill a process when it is touched instead of failing the allocation)");
    }
    return base_->allocate(n);
  }
  c10::Allocator* base_;
};

void BoundCpuAllocations() {
  static std::once_flag once;
  std::call_once(once, [] {
    static BoundedCpuAllocator bounded(c10::GetCPUAllocator());
    c10::SetCPUAllocator(&bounded, /*priority=*/1);
  });
}

// setErrorClass(TorchError): lib/torch hands over its error class so C++ can throw real instances.
Napi::Value SetErrorClass(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsFunction()) throw Napi::TypeError::New(env, "setErrorClass(fn): function expected");
  GetState(env).torchError = Napi::Persistent(info[0].As<Napi::Function>());
  return env.Undefined();
}

// LibTorch's "Could not run X with arguments from the Y backend" goes on to list every dispatch
// key; the first sentence is the whole story for a user.
std::string Shorten(const std::string& message) {
  if (message.rfind("Could not run", 0) == 0) {
    size_t end = message.find(". ");
    if (end != std::string::npos)
      return message.substr(0, end + 1) + " The operator has no kernel for that device or dtype in this LibTorch.";
  }
  return message;
}

}  // namespace

// ---- TensorTable ----

// V8 hears about tensor memory in steps of this size: one call per tiny tensor would cost more
// than the op, and the backstop only needs megabyte precision.
constexpr int64_t kExternalStep = 1 << 20;

void TensorTable::Account(Napi::Env env, int64_t delta) {
  bytes_total_ += delta;
  pending_ += delta;
  if (pending_ >= kExternalStep || pending_ <= -kExternalStep) {
    Napi::MemoryManagement::AdjustExternalMemory(env, pending_);
    pending_ = 0;
  }
}

int32_t TensorTable::Put(Napi::Env env, at::Tensor t) {
  const void* key = t.has_storage() ? static_cast<const void*>(t.storage().unsafeGetStorageImpl()) : nullptr;
  if (key) {
    auto [it, inserted] = storages_.try_emplace(key, StorageUse{int64_t(t.storage().nbytes()), 0});
    it->second.handles++;
    // Lets V8 see tensor memory, so finalizers run before an undisposed program exhausts the host.
    if (inserted && it->second.bytes) Account(env, it->second.bytes);
  }
  int32_t id;
  if (!free_.empty()) {
    id = free_.back();
    free_.pop_back();
    slots_[id] = std::move(t);
    storage_of_[id] = key;
  } else {
    id = int32_t(slots_.size());
    slots_.push_back(std::move(t));
    storage_of_.push_back(key);
  }
  live_++;
  return id;
}

const at::Tensor& TensorTable::Get(Napi::Env env, const Napi::Value& v, const char* op,
                                   const std::string& what) {
  int32_t id = v.IsNumber() ? v.As<Napi::Number>().Int32Value() : -2;
  if (const at::Tensor* t = Find(id)) return *t;
  if (id == -1) ThrowTorchError(env, op, what + " is a disposed tensor");
  ThrowTorchError(env, op, what + " is not a live tensor handle");
}

void TensorTable::Free(Napi::Env env, int32_t id) {
  if (id < 0 || id >= int32_t(slots_.size()) || !slots_[id].defined()) return;
  slots_[id].reset();
  if (const void* key = storage_of_[id]) {
    auto it = storages_.find(key);
    if (--it->second.handles == 0) {
      if (it->second.bytes) Account(env, -it->second.bytes);
      storages_.erase(it);
    }
    storage_of_[id] = nullptr;
  }
  free_.push_back(id);
  live_--;
}

void TensorTable::Clear() {
  slots_.clear();
  storage_of_.clear();
  storages_.clear();
  free_.clear();
  live_ = 0;
  bytes_total_ = 0;
  pending_ = 0;
}

TensorTable& Tensors(Napi::Env env) { return GetState(env).tensors; }

void ThrowTorchError(Napi::Env env, const std::string& op, const std::string& message) {
  State* st = env.GetInstanceData<State>();
  std::string text = Shorten(message);
  if (st && !st->torchError.IsEmpty()) {
    Napi::Object err = st->torchError.New({Napi::String::New(env, text), Napi::String::New(env, op)});
    throw Napi::Error(env, err);
  }
  throw Napi::Error::New(env, op + ": " + text);
}

void InitTensor(Napi::Env env, Napi::Object exports) {
  // The state dies with the environment (worker thread or process exit), freeing every tensor.
  env.SetInstanceData<State>(new State());
  // LibTorch 1.13 captures and symbolises a C++ backtrace for every c10::Error it throws (10 ms
  // each, measured here: an op rejecting its arguments cost 400 times the op), and a TorchError
  // never shows it. PyTorch's TORCH_SHOW_CPP_STACKTRACES=1 keeps it for debugging LibTorch itself.
  const char* traces = std::getenv("TORCH_SHOW_CPP_STACKTRACES");
  if (!traces || std::strcmp(traces, "1") != 0) c10::SetStackTraceFetcher(std::function<std::string()>([] { return std::string(); }));
  BoundCpuAllocations();
  auto fn = [&](const char* name, Napi::Function::Callback cb) {
    exports.Set(name, Napi::Function::New(env, cb, name));
  };
  fn("op", Op);
  fn("opInfo", OpInfoJs);
  fn("call", Call);
  fn("hasOp", HasOp);
  fn("fromBuffer", FromBuffer);
  fn("fromDecoded", FromDecoded);
  fn("toBuffer", ToBuffer);
  fn("item", Item);
  fn("meta", Meta);
  fn("free", Free);
  fn("freeMany", FreeMany);
  fn("dup", Dup);
  fn("liveCount", LiveCount);
  fn("liveBytes", LiveBytes);
  fn("externalMemory", ExternalMemory);
  fn("setRequiresGrad", SetRequiresGrad);
  fn("grad", Grad);
  fn("clearGrad", ClearGrad);
  fn("backward", Backward);
  fn("setGradEnabled", SetGradEnabled);
  fn("autocastState", AutocastState);
  fn("setAutocast", SetAutocast);
  fn("manualSeed", ManualSeed);
  fn("newGenerator", NewGenerator);
  fn("defaultGenerator", DefaultGenerator);
  fn("generatorState", GeneratorState);
  fn("setGeneratorState", SetGeneratorState);
  fn("generatorSeed", GeneratorSeed);
  fn("setNumThreads", SetNumThreads);
  fn("cudaDeviceCount", CudaDeviceCount);
  fn("cudaSynchronize", CudaSynchronize);
  fn("cudaMemoryStats", CudaMemoryStats);
  fn("cudaResetPeakMemoryStats", CudaResetPeakMemoryStats);
  fn("backendFlag", BackendFlag);
  fn("loadLibrary", LoadLibrary);
  fn("buildInfo", BuildInfo);
  fn("setErrorClass", SetErrorClass);
}

}  // namespace soco
