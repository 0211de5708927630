// TorchScript export: builds a torch::jit::Module tree from a description made in lib/model
// (submodules, parameters, buffers, and each module's methods as TorchScript source), compiles the
// methods with LibTorch's own frontend (Module::define) and writes the archive torch.jit.load reads
// (Module::save). Only the jit module API is included: the rest of torch/script.h is not needed.
#include "tensor.h"

#include <torch/csrc/jit/api/module.h>

#include <functional>
#include <memory>
#include <string>

namespace soco {
namespace {

std::string StringProp(Napi::Env env, const Napi::Object& o, const char* key, const std::string& where) {
  Napi::Value v = o.Get(key);
  if (!v.IsString()) ThrowTorchError(env, "saveTorchScript", where + "." + key + " must be a string");
  return v.As<Napi::String>().Utf8Value();
}

// [[name, value], ...] of an object's list property.
Napi::Array PairsProp(Napi::Env env, const Napi::Object& o, const char* key, const std::string& where) {
  Napi::Value v = o.Get(key);
  if (!v.IsArray()) ThrowTorchError(env, "saveTorchScript", where + "." + key + " must be an array of [name, value] pairs");
  return v.As<Napi::Array>();
}

void ForEachPair(Napi::Env env, const Napi::Array& pairs, const std::string& where,
                 const std::function<void(const std::string&, const Napi::Value&, const std::string&)>& fn) {
  for (uint32_t i = 0; i < pairs.Length(); i++) {
    Napi::Value p = pairs.Get(i);
    if (!p.IsArray() || p.As<Napi::Array>().Length() != 2 || !p.As<Napi::Array>().Get(0u).IsString())
      ThrowTorchError(env, "saveTorchScript", where + "[" + std::to_string(i) + "] must be a [name, value] pair");
    std::string name = p.As<Napi::Array>().Get(0u).As<Napi::String>().Utf8Value();
    fn(name, p.As<Napi::Array>().Get(1u), where + "." + name);
  }
}

// Children first: a module's methods can only be compiled once its submodules' methods exist.
// Every module gets its own class in the one compilation unit (mangled names never collide).
torch::jit::Module Build(Napi::Env env, const Napi::Object& spec, const std::string& where,
                         const std::shared_ptr<torch::jit::CompilationUnit>& cu) {
  torch::jit::Module m(c10::QualifiedName(StringProp(env, spec, "type", where)), cu, /*shouldMangle=*/true);
  // nn.Module's flag, which Python's ScriptModule (train(), eval(), printing) expects on every module.
  m.register_attribute("training", c10::BoolType::get(), true);
  ForEachPair(env, PairsProp(env, spec, "parameters", where), where, [&](const std::string& name, const Napi::Value& v, const std::string& w) {
    m.register_parameter(name, Tensors(env).Get(env, v, "saveTorchScript", w), /*is_buffer=*/false);
  });
  ForEachPair(env, PairsProp(env, spec, "buffers", where), where, [&](const std::string& name, const Napi::Value& v, const std::string& w) {
    m.register_buffer(name, Tensors(env).Get(env, v, "saveTorchScript", w));
  });
  ForEachPair(env, PairsProp(env, spec, "children", where), where, [&](const std::string& name, const Napi::Value& v, const std::string& w) {
    if (!v.IsObject()) ThrowTorchError(env, "saveTorchScript", w + " must be a module description");
    m.register_module(name, Build(env, v.As<Napi::Object>(), w, cu));
  });
  std::string methods = StringProp(env, spec, "methods", where);
  if (!methods.empty()) {
    try {
      m.define(methods);
    } catch (const std::exception& e) {  // a TorchScript compile error: say which module
      ThrowTorchError(env, "saveTorchScript", where + ": " + e.what());
    }
  }
  return m;
}

// saveTorchScript(file, spec): spec = { type, parameters: [[name, tensor]], buffers: [[name, tensor]],
// children: [[name, spec]], methods: 'def forward(self, ...): ...' }. Saved in eval mode.
Napi::Value SaveTorchScript(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* op = "saveTorchScript";
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsObject())
    ThrowTorchError(env, op, "expects (file: string, module: object)");
  std::string file = info[0].As<Napi::String>().Utf8Value();
  Napi::Object spec = info[1].As<Napi::Object>();
  Guard(env, op, [&] {
    torch::jit::Module m = Build(env, spec, "module", std::make_shared<torch::jit::CompilationUnit>());
    m.eval();
    m.save(file);
  });
  return env.Undefined();
}

}  // namespace

void InitTorchScript(Napi::Env env, Napi::Object exports) {
  exports.Set("saveTorchScript", Napi::Function::New(env, SaveTorchScript, "saveTorchScript"));
}

}  // namespace soco
