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
#include <ATen/core/Generator.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/detail/CUDAHooksInterface.h>
#include <ATen/ops/empty.h>
#include <c10/core/GradMode.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/version.h>

#include <dlfcn.h>

#include <cstring>
#include <unordered_map>

namespace soco {
namespace {

// How one schema argument is read from JS; resolved once per operator, not per call.
enum class Kind {
  Tensor, Int, Float, Bool, Scalar, IntList, FloatList, BoolList, TensorList, OptTensorList,
  ScalarList, String, Device, Generator, Unsupported
};

struct ArgSpec {
  std::string name;
  Kind kind;
  bool optional;
  c10::optional<c10::IValue> defaultValue;
  std::string typeName;
};

struct OpInfo {
  c10::OperatorHandle handle;
  std::string name;
  std::vector<ArgSpec> args;
  size_t numReturns;
  bool returnsSelf;  // in-place op: hand back the caller's own handle instead of a new one
};

struct State {
  TensorTable tensors;
  std::vector<OpInfo> ops;
  std::unordered_map<std::string, int32_t> opIndex;
  std::vector<at::Generator> generators;
  Napi::FunctionReference torchError;
};

State& GetState(Napi::Env env) { return *env.GetInstanceData<State>(); }

Kind KindOf(const c10::TypePtr& type) {
  using c10::TypeKind;
  switch (type->kind()) {
    case TypeKind::TensorType: return Kind::Tensor;
    case TypeKind::IntType:
    case TypeKind::SymIntType:
    case TypeKind::ScalarTypeType:
    case TypeKind::LayoutType:
    case TypeKind::MemoryFormatType: return Kind::Int;
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

[[noreturn]] void ThrowArg(Napi::Env env, const OpInfo& op, const ArgSpec& a, const char* got) {
  ThrowTorchError(env, op.name,
                  "argument '" + a.name + "' expects " + a.typeName + ", got " + got);
}

const char* JsTypeName(const Napi::Value& v) {
  switch (v.Type()) {
    case napi_undefined: return "undefined";
    case napi_null: return "null";
    case napi_boolean: return "boolean";
    case napi_number: return "number";
    case napi_string: return "string";
    case napi_object: return v.IsArray() ? "array" : "object";
    default: return "a value of another type";
  }
}

c10::Scalar ToScalar(const Napi::Value& v) {
  if (v.IsBoolean()) return c10::Scalar(v.As<Napi::Boolean>().Value());
  double d = v.As<Napi::Number>().DoubleValue();
  // Integral JS numbers become integer Scalars so integer tensors keep their dtype.
  if (std::nearbyint(d) == d && std::abs(d) < 9.007199254740992e15) return c10::Scalar(int64_t(d));
  return c10::Scalar(d);
}

c10::IValue Convert(Napi::Env env, State& st, const OpInfo& op, const ArgSpec& a,
                    const Napi::Value& v) {
  if (v.IsUndefined()) {
    if (a.defaultValue) return *a.defaultValue;
    if (a.optional) return c10::IValue();
    ThrowArg(env, op, a, "nothing (the argument is required)");
  }
  if (v.IsNull()) {
    if (a.optional) return c10::IValue();
    ThrowArg(env, op, a, "null");
  }
  switch (a.kind) {
    case Kind::Tensor:
      if (!v.IsNumber()) ThrowArg(env, op, a, JsTypeName(v));
      return st.tensors.Get(env, v, op.name.c_str(), "argument '" + a.name + "'");
    case Kind::Int:
      if (!v.IsNumber()) ThrowArg(env, op, a, JsTypeName(v));
      return c10::IValue(v.As<Napi::Number>().Int64Value());
    case Kind::Float:
      if (!v.IsNumber()) ThrowArg(env, op, a, JsTypeName(v));
      return c10::IValue(v.As<Napi::Number>().DoubleValue());
    case Kind::Bool:
      if (!v.IsBoolean()) ThrowArg(env, op, a, JsTypeName(v));
      return c10::IValue(v.As<Napi::Boolean>().Value());
    case Kind::Scalar:
      if (!v.IsNumber() && !v.IsBoolean()) ThrowArg(env, op, a, JsTypeName(v));
      return c10::IValue(ToScalar(v));
    case Kind::String:
      if (!v.IsString()) ThrowArg(env, op, a, JsTypeName(v));
      return c10::IValue(v.As<Napi::String>().Utf8Value());
    case Kind::Device: {
      if (!v.IsString()) ThrowArg(env, op, a, JsTypeName(v));
      return c10::IValue(c10::Device(v.As<Napi::String>().Utf8Value()));
    }
    case Kind::Generator: {
      if (!v.IsNumber()) ThrowArg(env, op, a, JsTypeName(v));
      int64_t g = v.As<Napi::Number>().Int64Value();
      if (g < 0 || g >= int64_t(st.generators.size()))
        ThrowTorchError(env, op.name, "argument '" + a.name + "' is not a generator handle");
      return c10::IValue(st.generators[g]);
    }
    default: break;
  }
  // Lists. A bare number where an int[] is expected broadcasts, as in Python (stride=2).
  if (a.kind == Kind::IntList && v.IsNumber())
    return c10::IValue(std::vector<int64_t>{v.As<Napi::Number>().Int64Value()});
  if (!v.IsArray()) ThrowArg(env, op, a, JsTypeName(v));
  Napi::Array arr = v.As<Napi::Array>();
  uint32_t n = arr.Length();
  switch (a.kind) {
    case Kind::IntList: {
      std::vector<int64_t> out(n);
      for (uint32_t i = 0; i < n; i++) {
        Napi::Value e = arr[i];
        if (!e.IsNumber()) ThrowArg(env, op, a, "an array holding a non-number");
        out[i] = e.As<Napi::Number>().Int64Value();
      }
      return c10::IValue(out);
    }
    case Kind::FloatList: {
      std::vector<double> out(n);
      for (uint32_t i = 0; i < n; i++) {
        Napi::Value e = arr[i];
        if (!e.IsNumber()) ThrowArg(env, op, a, "an array holding a non-number");
        out[i] = e.As<Napi::Number>().DoubleValue();
      }
      return c10::IValue(out);
    }
    case Kind::BoolList: {
      c10::List<bool> out;
      for (uint32_t i = 0; i < n; i++) {
        Napi::Value e = arr[i];
        if (!e.IsBoolean()) ThrowArg(env, op, a, "an array holding a non-boolean");
        out.push_back(e.As<Napi::Boolean>().Value());
      }
      return c10::IValue(out);
    }
    case Kind::ScalarList: {
      std::vector<c10::Scalar> out;
      out.reserve(n);
      for (uint32_t i = 0; i < n; i++) {
        Napi::Value e = arr[i];
        if (!e.IsNumber() && !e.IsBoolean()) ThrowArg(env, op, a, "an array holding a non-number");
        out.push_back(ToScalar(e));
      }
      return c10::IValue(out);
    }
    case Kind::TensorList: {
      std::vector<at::Tensor> out;
      out.reserve(n);
      for (uint32_t i = 0; i < n; i++) {
        Napi::Value e = arr[i];
        if (!e.IsNumber()) ThrowArg(env, op, a, "an array holding a non-tensor");
        out.push_back(st.tensors.Get(env, e, op.name.c_str(),
                                     "argument '" + a.name + "'[" + std::to_string(i) + "]"));
      }
      return c10::IValue(out);
    }
    case Kind::OptTensorList: {
      c10::List<c10::optional<at::Tensor>> out;
      for (uint32_t i = 0; i < n; i++) {
        Napi::Value e = arr[i];
        if (e.IsNull() || e.IsUndefined()) {
          out.push_back(c10::nullopt);
        } else {
          if (!e.IsNumber()) ThrowArg(env, op, a, "an array holding a non-tensor");
          out.push_back(st.tensors.Get(env, e, op.name.c_str(),
                                       "argument '" + a.name + "'[" + std::to_string(i) + "]"));
        }
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
  if (v.isIntList()) {
    auto list = v.toIntVector();
    Napi::Array out = Napi::Array::New(env, list.size());
    for (size_t i = 0; i < list.size(); i++) out[i] = Napi::Number::New(env, double(list[i]));
    return out;
  }
  throw std::runtime_error("the operator returned a " + v.tagKind() + ", which is not supported");
}

// op(name, overload) -> index for call(); resolving once keeps the per-call cost to a table lookup.
Napi::Value Op(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  State& st = GetState(env);
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsString())
    throw Napi::TypeError::New(env, "op(name, overload): two strings expected");
  std::string name = info[0].As<Napi::String>();
  std::string overload = info[1].As<Napi::String>();
  std::string key = overload.empty() ? name : name + "." + overload;
  auto it = st.opIndex.find(key);
  if (it != st.opIndex.end()) return Napi::Number::New(env, it->second);
  auto handle = c10::Dispatcher::singleton().findSchema({name, overload});
  if (!handle) ThrowTorchError(env, key, "no such operator in this LibTorch");
  const c10::FunctionSchema& schema = handle->schema();
  OpInfo op{*handle, key, {}, schema.returns().size(), false};
  for (const auto& a : schema.arguments()) {
    c10::TypePtr type = a.type();
    bool optional = type->kind() == c10::TypeKind::OptionalType;
    if (optional) type = type->expectRef<c10::OptionalType>().getElementType();
    op.args.push_back({a.name(), KindOf(type), optional, a.default_value(), a.type()->str()});
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

// call(index, ...args): one boxed dispatcher call.
Napi::Value Call(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  State& st = GetState(env);
  int32_t index = info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().Int32Value() : -1;
  if (index < 0 || index >= int32_t(st.ops.size()))
    throw Napi::TypeError::New(env, "call(): the first argument must be an index from op()");
  const OpInfo& op = st.ops[index];
  size_t given = info.Length() - 1;
  if (given > op.args.size())
    ThrowTorchError(env, op.name, "takes " + std::to_string(op.args.size()) + " arguments, got " +
                                      std::to_string(given));
  torch::jit::Stack stack;
  stack.reserve(op.args.size());
  for (size_t i = 0; i < op.args.size(); i++) {
    Napi::Value v = i < given ? info[i + 1] : env.Undefined();
    stack.push_back(Convert(env, st, op, op.args[i], v));
  }
  Guard(env, op.name, [&] { op.handle.callBoxed(&stack); });
  if (op.returnsSelf) return info[1];
  if (op.numReturns == 0) return env.Undefined();
  return Guard(env, op.name, [&] {
    if (stack.size() == 1) return ToJs(env, st, std::move(stack[0]));
    Napi::Array out = Napi::Array::New(env, stack.size());
    for (size_t i = 0; i < stack.size(); i++) out[i] = ToJs(env, st, std::move(stack[i]));
    return Napi::Value(out);
  });
}

// ---- data in and out ----

struct DtypeBuffer {
  at::ScalarType dtype;
  napi_typedarray_type array;
};

// Which TypedArray carries which dtype's bytes; half types travel as their raw 16-bit patterns.
constexpr DtypeBuffer kBuffers[] = {
    {at::kFloat, napi_float32_array}, {at::kDouble, napi_float64_array},
    {at::kHalf, napi_uint16_array},   {at::kBFloat16, napi_uint16_array},
    {at::kLong, napi_bigint64_array}, {at::kInt, napi_int32_array},
    {at::kByte, napi_uint8_array},    {at::kBool, napi_uint8_array},
};

napi_typedarray_type ArrayTypeFor(at::ScalarType t) {
  for (const auto& b : kBuffers)
    if (b.dtype == t) return b.array;
  throw std::runtime_error(std::string("dtype ") + c10::toString(t) + " has no TypedArray form");
}

std::vector<int64_t> ShapeArg(Napi::Env env, const Napi::Value& v, const char* op) {
  if (!v.IsArray()) ThrowTorchError(env, op, "shape must be an array of non-negative integers");
  Napi::Array arr = v.As<Napi::Array>();
  std::vector<int64_t> shape(arr.Length());
  for (uint32_t i = 0; i < arr.Length(); i++) {
    Napi::Value e = arr[i];
    double d = e.IsNumber() ? e.As<Napi::Number>().DoubleValue() : -1;
    if (d < 0 || std::floor(d) != d)
      ThrowTorchError(env, op, "shape must be an array of non-negative integers");
    shape[i] = int64_t(d);
  }
  return shape;
}

at::ScalarType DtypeArg(Napi::Env env, const Napi::Value& v, const char* op) {
  int code = v.IsNumber() ? v.As<Napi::Number>().Int32Value() : -1;
  for (const auto& b : kBuffers)
    if (int(b.dtype) == code) return b.dtype;
  ThrowTorchError(env, op, "unsupported dtype code " + std::to_string(code));
}

// fromBuffer(typedArray, shape, dtypeCode) -> handle of a new CPU tensor holding a copy.
Napi::Value FromBuffer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* op = "fromBuffer";
  if (info.Length() < 3 || !info[0].IsTypedArray()) ThrowTorchError(env, op, "data must be a TypedArray");
  auto arr = info[0].As<Napi::TypedArray>();
  std::vector<int64_t> shape = ShapeArg(env, info[1], op);
  at::ScalarType dtype = DtypeArg(env, info[2], op);
  if (arr.TypedArrayType() != ArrayTypeFor(dtype))
    ThrowTorchError(env, op, std::string("the TypedArray's type does not carry ") + c10::toString(dtype));
  int64_t numel = 1;
  for (auto s : shape) numel *= s;
  size_t itemsize = c10::elementSize(dtype);
  if (size_t(numel) * itemsize != arr.ByteLength())
    ThrowTorchError(env, op, "shape [" + c10::Join(",", shape) + "] holds " + std::to_string(numel) +
                                 " elements but the data has " + std::to_string(arr.ByteLength() / itemsize));
  at::Tensor t = Guard(env, op, [&] { return at::empty(shape, at::TensorOptions().dtype(dtype)); });
  auto* src = static_cast<const uint8_t*>(arr.ArrayBuffer().Data()) + arr.ByteOffset();
  if (numel > 0) std::memcpy(t.data_ptr(), src, arr.ByteLength());
  return Napi::Number::New(env, Tensors(env).Put(env, std::move(t)));
}

// toBuffer(handle) -> TypedArray holding a contiguous CPU copy.
Napi::Value ToBuffer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* op = "toBuffer";
  const at::Tensor& t = Tensors(env).Get(env, info[0], op, "tensor");
  return Guard(env, op, [&]() -> Napi::Value {
    napi_typedarray_type type = ArrayTypeFor(t.scalar_type());
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

// meta(handle) -> [dtypeCode, device, requiresGrad, ...shape]: one call for all that JS caches.
Napi::Value Meta(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const at::Tensor& t = Tensors(env).Get(env, info[0], "meta", "tensor");
  int64_t dim = t.dim();
  Napi::Array out = Napi::Array::New(env, 3 + dim);
  out[0u] = Napi::Number::New(env, int(t.scalar_type()));
  out[1u] = Napi::String::New(env, t.device().str());
  out[2u] = Napi::Boolean::New(env, t.requires_grad());
  for (int64_t i = 0; i < dim; i++) out[uint32_t(3 + i)] = Napi::Number::New(env, double(t.size(i)));
  return out;
}

Napi::Value Free(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsNumber()) throw Napi::TypeError::New(env, "free(handle): number expected");
  Tensors(env).Free(env, info[0].As<Napi::Number>().Int32Value());
  return env.Undefined();
}

Napi::Value LiveCount(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), double(Tensors(info.Env()).Live()));
}

// ---- autograd ----

Napi::Value SetRequiresGrad(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const at::Tensor& t = Tensors(env).Get(env, info[0], "requiresGrad_", "tensor");
  if (!info[1].IsBoolean()) ThrowTorchError(env, "requiresGrad_", "requiresGrad must be a boolean");
  Guard(env, "requiresGrad_", [&] { const_cast<at::Tensor&>(t).set_requires_grad(info[1].As<Napi::Boolean>()); });
  return env.Undefined();
}

Napi::Value Grad(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const at::Tensor& t = Tensors(env).Get(env, info[0], "grad", "tensor");
  at::Tensor g = t.grad();
  if (!g.defined()) return env.Null();
  return Napi::Number::New(env, Tensors(env).Put(env, std::move(g)));
}

// Drops the accumulated gradient (set_to_none semantics, as PyTorch's zero_grad now defaults to).
Napi::Value ClearGrad(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const at::Tensor& t = Tensors(env).Get(env, info[0], "clearGrad", "tensor");
  const_cast<at::Tensor&>(t).mutable_grad().reset();
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
  for (uint32_t i = 0; i < outs.Length(); i++) outputs.push_back(tt.Get(env, outs[i], op, "output"));
  if (info[1].IsArray()) {
    Napi::Array gs = info[1].As<Napi::Array>();
    if (gs.Length() != outs.Length()) ThrowTorchError(env, op, "one gradient per output is needed");
    for (uint32_t i = 0; i < gs.Length(); i++) grads.push_back(tt.Get(env, gs[i], op, "gradient"));
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

// ---- random numbers, threads, devices, libraries ----

uint64_t SeedArg(Napi::Env env, const Napi::Value& v, const char* op) {
  double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1;
  if (d < 0 || std::floor(d) != d || d > 9.007199254740991e15)
    ThrowTorchError(env, op, "seed must be a non-negative safe integer");
  return uint64_t(d);
}

Napi::Value ManualSeed(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint64_t seed = SeedArg(env, info[0], "manualSeed");
  Guard(env, "manualSeed", [&] { at::manual_seed(seed); });
  return env.Undefined();
}

// newGenerator(seed) -> handle of a CPU generator for the *.generator op overloads.
Napi::Value NewGenerator(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  State& st = GetState(env);
  st.generators.push_back(at::make_generator<at::CPUGeneratorImpl>(SeedArg(env, info[0], "generator")));
  return Napi::Number::New(env, double(st.generators.size() - 1));
}

Napi::Value SetNumThreads(const Napi::CallbackInfo& info) {
  if (info[0].IsNumber()) at::set_num_threads(std::max(1, info[0].As<Napi::Number>().Int32Value()));
  return Napi::Number::New(info.Env(), at::get_num_threads());
}

Napi::Value CudaDeviceCount(const Napi::CallbackInfo& info) {
  int n = at::detail::getCUDAHooks().hasCUDA() ? at::detail::getCUDAHooks().getNumGPUs() : 0;
  return Napi::Number::New(info.Env(), n);
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
  std::string name = info[0].As<Napi::String>();
  std::string overload = info[1].As<Napi::String>();
  return Napi::Boolean::New(info.Env(), c10::Dispatcher::singleton().findSchema({name, overload}).has_value());
}

Napi::Value Version(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("torch", std::to_string(TORCH_VERSION_MAJOR) + "." + std::to_string(TORCH_VERSION_MINOR) + "." +
                     std::to_string(TORCH_VERSION_PATCH));
#ifdef SOCO_WITH_CUDA
  o.Set("cuda", true);
#else
  o.Set("cuda", false);
#endif
  return o;
}

// setErrorClass(TorchError): lib/torch hands over its error class so C++ can throw real instances.
Napi::Value SetErrorClass(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsFunction()) throw Napi::TypeError::New(env, "setErrorClass(fn): function expected");
  GetState(env).torchError = Napi::Persistent(info[0].As<Napi::Function>());
  return env.Undefined();
}

}  // namespace

// ---- TensorTable ----

int32_t TensorTable::Put(Napi::Env env, at::Tensor t) {
  int64_t bytes = t.has_storage() ? int64_t(t.storage().nbytes()) : 0;
  int32_t id;
  if (!free_.empty()) {
    id = free_.back();
    free_.pop_back();
    slots_[id] = std::move(t);
    bytes_[id] = bytes;
  } else {
    id = int32_t(slots_.size());
    slots_.push_back(std::move(t));
    bytes_.push_back(bytes);
  }
  live_++;
  // Lets V8 see tensor memory, so finalizers run before an undisposed program exhausts the host.
  if (bytes) Napi::MemoryManagement::AdjustExternalMemory(env, bytes);
  return id;
}

const at::Tensor& TensorTable::Get(Napi::Env env, const Napi::Value& v, const char* op,
                                   const std::string& what) {
  int32_t id = v.IsNumber() ? v.As<Napi::Number>().Int32Value() : -2;
  if (id == -1) ThrowTorchError(env, op, what + " is a disposed tensor");
  if (id < 0 || id >= int32_t(slots_.size()) || !slots_[id].defined())
    ThrowTorchError(env, op, what + " is not a live tensor handle");
  return slots_[id];
}

void TensorTable::Free(Napi::Env env, int32_t id) {
  if (id < 0 || id >= int32_t(slots_.size()) || !slots_[id].defined()) return;
  slots_[id].reset();
  if (bytes_[id]) Napi::MemoryManagement::AdjustExternalMemory(env, -bytes_[id]);
  free_.push_back(id);
  live_--;
}

void TensorTable::Clear() {
  slots_.clear();
  bytes_.clear();
  free_.clear();
  live_ = 0;
}

TensorTable& Tensors(Napi::Env env) { return GetState(env).tensors; }

void ThrowTorchError(Napi::Env env, const std::string& op, const std::string& message) {
  State* st = env.GetInstanceData<State>();
  if (st && !st->torchError.IsEmpty()) {
    Napi::Object err = st->torchError.New({Napi::String::New(env, message), Napi::String::New(env, op)});
    throw Napi::Error(env, err);
  }
  throw Napi::Error::New(env, op + ": " + message);
}

void InitTensor(Napi::Env env, Napi::Object exports) {
  // The state dies with the environment (worker thread or process exit), freeing every tensor.
  env.SetInstanceData<State>(new State());
  auto fn = [&](const char* name, Napi::Function::Callback cb) {
    exports.Set(name, Napi::Function::New(env, cb, name));
  };
  fn("op", Op);
  fn("call", Call);
  fn("hasOp", HasOp);
  fn("fromBuffer", FromBuffer);
  fn("toBuffer", ToBuffer);
  fn("item", Item);
  fn("meta", Meta);
  fn("free", Free);
  fn("liveCount", LiveCount);
  fn("setRequiresGrad", SetRequiresGrad);
  fn("grad", Grad);
  fn("clearGrad", ClearGrad);
  fn("backward", Backward);
  fn("setGradEnabled", SetGradEnabled);
  fn("manualSeed", ManualSeed);
  fn("newGenerator", NewGenerator);
  fn("setNumThreads", SetNumThreads);
  fn("cudaDeviceCount", CudaDeviceCount);
  fn("loadLibrary", LoadLibrary);
  fn("version", Version);
  fn("setErrorClass", SetErrorClass);
}

}  // namespace soco
