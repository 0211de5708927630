// c10d for soco-train: TCPStore, process groups (Gloo on CPU, NCCL on CUDA builds), collectives that
// return Promises, a bucketed gradient all-reducer hooked into autograd, and SyncBatchNorm.
//
// LibTorch's C++ API has no DistributedDataParallel and no SyncBatchNorm, so both are built here on
// c10d's process groups (DESIGN.md, "Distributed"). The same source compiles against LibTorch 1.13
// (process groups derive from c10d::ProcessGroup) and 2.x (they derive from c10d::Backend; the
// ProcessGroup there is a facade we do not need).
#include "tensor.h"

#include <ATen/ops/batch_norm.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/from_blob.h>
#include <ATen/ops/full.h>
#include <ATen/ops/stack.h>
#include <ATen/ops/var_mean.h>
#include <ATen/ops/zeros.h>
#include <c10/core/GradMode.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/variable.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/csrc/distributed/c10d/Work.hpp>
#include <torch/version.h>
#if TORCH_VERSION_MAJOR >= 2
#include <torch/csrc/distributed/c10d/Backend.hpp>
#else
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#endif

#ifdef USE_C10D_GLOO
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif
#if defined(SOCO_WITH_CUDA) && defined(USE_C10D_NCCL)
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#define SOCO_HAVE_NCCL 1
#endif

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <mutex>
#include <sstream>
#include <thread>
#include <unordered_set>

#ifdef __linux__
#include <cerrno>
#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>
#endif

namespace soco {
namespace {

// LibTorch 2.x: ProcessGroupGloo/NCCL derive from c10d::Backend (c10d::ProcessGroup became a
// facade over backends); 1.13: from c10d::ProcessGroup. Both have the collectives used here.
#if TORCH_VERSION_MAJOR >= 2
using PgBase = c10d::Backend;
#else
using PgBase = c10d::ProcessGroup;
#endif

using Ms = std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

// ---- objects handed to JS as type-tagged externals ----

const napi_type_tag kStoreTag = {0x50c0d157a11e0001ULL, 0x7c95e2d8a40b0001ULL};
const napi_type_tag kGroupTag = {0x50c0d157a11e0002ULL, 0x7c95e2d8a40b0002ULL};
const napi_type_tag kReducerTag = {0x50c0d157a11e0003ULL, 0x7c95e2d8a40b0003ULL};

// A process group plus what every message and wait needs. A CustomClassHolder so SyncBN's autograd
// context can keep it alive (as an IValue capsule) until its backward has run.
struct Group : torch::CustomClassHolder {
  c10::intrusive_ptr<PgBase> pg;
  int rank = 0;
  int size = 1;
  bool nccl = false;
  int64_t device = -1;  // CUDA device of this rank (NCCL barrier), -1 on CPU
  Ms timeout{0};
  // Set once a collective failed or timed out: the group is then unusable, and its destructor
  // (which drains Gloo's queue and joins its threads) could wait forever on a stuck operation.
  std::atomic<bool> failed{false};
  // Each rank's collective address and node (from the rendezvous; empty when unknown), so that an
  // error quoting a peer's address can name the rank and node that went away.
  std::vector<std::string> peerAddress;
  std::vector<int> peerNode;

  std::string Where() const {
    return "rank " + std::to_string(rank) + " of " + std::to_string(size) + " (" +
           (nccl ? "nccl" : "gloo") + ")";
  }

  // Gloo quotes the peer of a failed connection as "[address]:port". Returns "" when the message
  // names no known peer.
  std::string Blame(const std::string& msg) const {
    std::map<int, std::vector<int>> lost;  // node -> ranks
    std::string address;
    for (size_t r = 0; r < peerAddress.size() && r < peerNode.size(); r++) {
      if (int(r) == rank || peerAddress[r].empty()) continue;
      if (msg.find("[" + peerAddress[r] + "]") == std::string::npos) continue;
      lost[peerNode[r]].push_back(int(r));
      address = peerAddress[r];
    }
    if (lost.empty()) return "";
    std::string who;
    for (auto& [node, ranks] : lost) {
      if (!who.empty()) who += " or ";
      who += "node " + std::to_string(node) + " (rank";
      if (ranks.size() > 1) who += "s";
      for (size_t k = 0; k < ranks.size(); k++) who += (k ? ", " : " ") + std::to_string(ranks[k]);
      who += ")";
    }
    return "; the peer at " + address + " is " + who +
           ": it ended (its own log says why) or the network to it failed";
  }

  ~Group() override {
    if (failed) (void)pg.release();  // leak on purpose: see `failed`
  }
};

struct StoreBox {
  c10::intrusive_ptr<c10d::Store> store;
  std::string host;
  int port;
};

template <typename T>
Napi::Value Wrap(Napi::Env env, T* box, const napi_type_tag& tag) {
  auto ext = Napi::External<T>::New(env, box, [](Napi::Env, T* p) { delete p; });
  NAPI_THROW_IF_FAILED(env, napi_type_tag_object(env, ext, &tag), Napi::Value());
  return ext;
}

template <typename T>
T* Unwrap(Napi::Env env, const Napi::Value& v, const napi_type_tag& tag, const char* op, const char* what) {
  bool ok = false;
  if (v.IsExternal()) napi_check_object_type_tag(env, v, &tag, &ok);
  if (!ok) ThrowTorchError(env, op, std::string(what) + " is not a " + what + " handle");
  T* p = v.As<Napi::External<T>>().Data();
  if (!p) ThrowTorchError(env, op, std::string(what) + " was destroyed");
  return p;
}

Group& GroupArg(Napi::Env env, const Napi::Value& v, const char* op) {
  auto* box = Unwrap<c10::intrusive_ptr<Group>>(env, v, kGroupTag, op, "group");
  if (!*box) ThrowTorchError(env, op, "the process group was destroyed");
  return **box;
}

c10::intrusive_ptr<Group> GroupPtr(Napi::Env env, const Napi::Value& v, const char* op) {
  GroupArg(env, v, op);
  return *Unwrap<c10::intrusive_ptr<Group>>(env, v, kGroupTag, op, "group");
}

Ms TimeoutArg(Napi::Env env, const Napi::Value& v, const char* op) {
  double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1;
  if (!(d > 0) || d > 1e10) ThrowTorchError(env, op, "timeoutMs must be a positive number of milliseconds");
  return Ms(int64_t(d));
}

int IntArg(Napi::Env env, const Napi::Value& v, const char* op, const char* name, int lo, int hi) {
  double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1e300;
  if (std::floor(d) != d || d < lo || d > hi)
    ThrowTorchError(env, op, std::string(name) + " must be an integer in [" + std::to_string(lo) + ", " +
                                 std::to_string(hi) + "]");
  return int(d);
}

std::string StrArg(Napi::Env env, const Napi::Value& v, const char* op, const char* name) {
  if (!v.IsString()) ThrowTorchError(env, op, std::string(name) + " must be a string");
  return v.As<Napi::String>().Utf8Value();
}

Napi::Value ErrorValue(Napi::Env env, const std::string& op, const std::string& message) {
  try {
    ThrowTorchError(env, op, message);
  } catch (const Napi::Error& e) {
    return e.Value();
  }
}

// Runs `run` on a libuv thread and settles a Promise on the JS thread: `done` builds the result.
class Task : public Napi::AsyncWorker {
 public:
  using Run = std::function<void()>;
  using Done = std::function<Napi::Value(Napi::Env)>;

  Task(Napi::Env env, std::string op, Run run, Done done = nullptr)
      : Napi::AsyncWorker(env, "soco:dist"),
        deferred_(Napi::Promise::Deferred::New(env)),
        op_(std::move(op)),
        run_(std::move(run)),
        done_(std::move(done)) {}

  static Napi::Value Start(Napi::Env env, std::string op, Run run, Done done = nullptr) {
    auto* t = new Task(env, std::move(op), std::move(run), std::move(done));
    Napi::Promise p = t->deferred_.Promise();
    t->Queue();
    return p;
  }

 protected:
  void Execute() override {
    try {
      run_();
    } catch (const c10::Error& e) {
      SetError(e.what_without_backtrace());
    } catch (const std::exception& e) {
      SetError(e.what());
    }
  }
  void OnOK() override {
    Napi::Env env = Env();
    Napi::HandleScope scope(env);
    try {
      deferred_.Resolve(done_ ? done_(env) : env.Undefined());
    } catch (const Napi::Error& e) {
      deferred_.Reject(e.Value());
    }
  }
  void OnError(const Napi::Error& e) override {
    Napi::Env env = Env();
    Napi::HandleScope scope(env);
    deferred_.Reject(ErrorValue(env, op_, e.Message()));
  }

 private:
  Napi::Promise::Deferred deferred_;
  std::string op_;
  Run run_;
  Done done_;
};

std::string Describe(const std::exception_ptr& p) {
  try {
    std::rethrow_exception(p);
  } catch (const c10::Error& e) {
    return e.what_without_backtrace();
  } catch (const std::exception& e) {
    return e.what();
  } catch (...) {
    return "unknown error";
  }
}

// Waits for one collective. hostBlock=false lets NCCL work stay stream-ordered (the host goes on;
// NCCL's watchdog enforces the group timeout), which is what the training step wants; JS-facing
// collectives block their libuv thread until the data is there, with the per-call timeout.
void WaitWork(Group& g, const c10::intrusive_ptr<c10d::Work>& work, Ms timeout, bool hostBlock,
              const std::string& what) {
  try {
    if (!g.nccl) {
      work->wait(timeout);
      return;
    }
    work->wait();  // NCCL: makes this thread's current stream wait for the collective
    if (!hostBlock) return;
    auto deadline = Clock::now() + timeout;
    while (!work->isCompleted()) {
      if (Clock::now() > deadline) throw std::runtime_error("Operation timed out!");
      std::this_thread::sleep_for(Ms(1));
    }
    if (work->exception()) std::rethrow_exception(work->exception());
  } catch (const std::exception&) {
    g.failed = true;
    std::string msg = Describe(std::current_exception());
    if (!work->isCompleted() || msg.find("timed out") != std::string::npos)
      throw std::runtime_error(g.Where() + ": " + what + " timed out after " + std::to_string(timeout.count()) +
                               " ms (another rank is slow, stuck or gone): " + msg + g.Blame(msg));
    throw std::runtime_error(g.Where() + ": " + what + " failed: " + msg + g.Blame(msg));
  }
}

// Starts a collective; enqueue errors (bad tensor, dead group) name the rank too.
template <typename Fn>
c10::intrusive_ptr<c10d::Work> Launch(Group& g, const std::string& what, Fn&& fn) {
  if (g.failed) throw std::runtime_error(g.Where() + ": " + what + ": the process group failed earlier");
  try {
    return fn();
  } catch (const std::exception&) {
    throw std::runtime_error(g.Where() + ": " + what + " could not start: " + Describe(std::current_exception()));
  }
}

// ---- store and groups ----

// createStore(host, port, worldSize, isServer, timeoutMs, prefix) -> Promise<store>. Rank 0 hosts
// the store; the others connect with retries. worldSize > 0: the server resolves once that many
// ranks have connected; 0: at once (the caller runs its own rendezvous on the store). timeoutMs is
// also the default wait of get(). prefix: every key lives under it (a store shared with others,
// e.g. torchrun's agent store); "" for none.
Napi::Value CreateStore(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* op = "dist.createStore";
  std::string host = StrArg(env, info[0], op, "host");
  int port = IntArg(env, info[1], op, "port", 0, 65535);
  int world = IntArg(env, info[2], op, "worldSize", 0, 1 << 20);
  if (!info[3].IsBoolean()) ThrowTorchError(env, op, "isServer must be a boolean");
  bool server = info[3].As<Napi::Boolean>();
  Ms timeout = TimeoutArg(env, info[4], op);
  std::string prefix = info[5].IsString() ? info[5].As<Napi::String>().Utf8Value() : "";
  auto out = std::make_shared<c10::intrusive_ptr<c10d::Store>>();
  auto actual = std::make_shared<int>(port);
  return Task::Start(
      env, op,
      [=] {
        c10d::TCPStoreOptions o;
        o.port = uint16_t(port);
        o.isServer = server;
        if (world > 0) o.numWorkers = size_t(world);
        o.waitWorkers = world > 0;  // every rank counts itself in; the server returns once all have
        o.timeout = timeout;
        try {
          auto tcp = c10::make_intrusive<c10d::TCPStore>(host, o);
          *actual = tcp->getPort();
          if (prefix.empty())
            *out = tcp;
          else
            *out = c10::make_intrusive<c10d::PrefixStore>(prefix, tcp);
        } catch (const std::exception&) {
          std::string m = Describe(std::current_exception());
          // 1.13 says "Address already in use", 2.x "EADDRINUSE, message: address already in use".
          if (server && (m.find("Address already in use") != std::string::npos || m.find("EADDRINUSE") != std::string::npos))
            throw std::runtime_error("port " + std::to_string(port) +
                                     " is in use on this machine (another job, or an earlier run still exiting): "
                                     "choose another --master-port (MASTER_PORT), the same on every node");
          throw std::runtime_error(
              server ? "cannot host the TCPStore on " + host + ":" + std::to_string(port) +
                           (world > 0 ? " or not all " + std::to_string(world) + " ranks joined" : "") + " within " +
                           std::to_string(timeout.count()) + " ms: " + m
                     : "cannot reach the TCPStore at " + host + ":" + std::to_string(port) + " within " +
                           std::to_string(timeout.count()) + " ms: " + m);
        }
      },
      [=](Napi::Env env) { return Wrap(env, new StoreBox{*out, host, *actual}, kStoreTag); });
}

Napi::Value StorePort(const Napi::CallbackInfo& info) {
  auto* s = Unwrap<StoreBox>(info.Env(), info[0], kStoreTag, "dist.storePort", "store");
  return Napi::Number::New(info.Env(), s->port);
}

// storeSet(store, key, bytes) / storeGet(store, key, timeoutMs) / storeAdd(store, key, n): small
// shared state for the job (run ids, stop flags); all network round trips, so all asynchronous.
Napi::Value StoreSet(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* op = "dist.storeSet";
  auto store = Unwrap<StoreBox>(env, info[0], kStoreTag, op, "store")->store;
  std::string key = StrArg(env, info[1], op, "key");
  if (!info[2].IsTypedArray()) ThrowTorchError(env, op, "value must be a Uint8Array");
  auto arr = info[2].As<Napi::Uint8Array>();
  std::vector<uint8_t> value(arr.Data(), arr.Data() + arr.ByteLength());
  return Task::Start(env, op, [=] { store->set(key, value); });
}

Napi::Value StoreGet(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* op = "dist.storeGet";
  auto store = Unwrap<StoreBox>(env, info[0], kStoreTag, op, "store")->store;
  std::string key = StrArg(env, info[1], op, "key");
  Ms timeout = TimeoutArg(env, info[2], op);
  auto out = std::make_shared<std::vector<uint8_t>>();
  return Task::Start(
      env, op,
      [=] {
        try {
          store->wait({key}, timeout);
        } catch (const std::exception&) {
          throw std::runtime_error("key '" + key + "' did not appear within " + std::to_string(timeout.count()) +
                                   " ms: " + Describe(std::current_exception()));
        }
        *out = store->get(key);
      },
      [=](Napi::Env env) { return Napi::Buffer<uint8_t>::Copy(env, out->data(), out->size()); });
}

Napi::Value StoreAdd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* op = "dist.storeAdd";
  auto store = Unwrap<StoreBox>(env, info[0], kStoreTag, op, "store")->store;
  std::string key = StrArg(env, info[1], op, "key");
  int delta = IntArg(env, info[2], op, "delta", -(1 << 30), 1 << 30);
  auto out = std::make_shared<int64_t>(0);
  return Task::Start(
      env, op, [=] { *out = store->add(key, delta); },
      [=](Napi::Env env) { return Napi::Number::New(env, double(*out)); });
}

// storeCheck(store, keys) -> Promise<boolean>: whether every key is set (no waiting).
Napi::Value StoreCheck(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* op = "dist.storeCheck";
  auto store = Unwrap<StoreBox>(env, info[0], kStoreTag, op, "store")->store;
  if (!info[1].IsArray()) ThrowTorchError(env, op, "keys must be an array of strings");
  auto arr = info[1].As<Napi::Array>();
  std::vector<std::string> keys;
  for (uint32_t i = 0; i < arr.Length(); i++) keys.push_back(StrArg(env, arr.Get(i), op, "keys[i]"));
  auto out = std::make_shared<bool>(false);
  return Task::Start(
      env, op, [=] { *out = store->check(keys); }, [=](Napi::Env env) { return Napi::Boolean::New(env, *out); });
}

// createGroup(store, prefix, rank, size, backend, timeoutMs, glooHost, cudaDevice, ncclIfname, peers)
// -> Promise<group>. The prefix keeps the rendezvous keys of several groups on one store apart.
// glooHost: the address Gloo binds ("" = resolve this machine's hostname, as PyTorch does;
// GLOO_SOCKET_IFNAME, a comma separated list of interfaces, wins over both). ncclIfname: the
// interface NCCL's sockets use unless NCCL_SOCKET_IFNAME is set ("" = NCCL's own choice).
// peers: null or {addresses, nodes}, each rank's collective address and node, for error messages.
Napi::Value CreateGroup(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* op = "dist.createGroup";
  auto store = Unwrap<StoreBox>(env, info[0], kStoreTag, op, "store")->store;
  std::string prefix = StrArg(env, info[1], op, "prefix");
  int size = IntArg(env, info[3], op, "size", 1, 1 << 20);
  int rank = IntArg(env, info[2], op, "rank", 0, size - 1);
  std::string backend = StrArg(env, info[4], op, "backend");
  Ms timeout = TimeoutArg(env, info[5], op);
  std::string glooHost = info[6].IsString() ? info[6].As<Napi::String>().Utf8Value() : "";
  int device = info[7].IsNumber() ? info[7].As<Napi::Number>().Int32Value() : -1;
  std::string ncclIfname = info[8].IsString() ? info[8].As<Napi::String>().Utf8Value() : "";
  std::vector<std::string> peerAddress;
  std::vector<int> peerNode;
  if (info[9].IsObject()) {
    auto peers = info[9].As<Napi::Object>();
    Napi::Value a = peers.Get("addresses"), n = peers.Get("nodes");
    if (!a.IsArray() || !n.IsArray() || a.As<Napi::Array>().Length() != uint32_t(size) ||
        n.As<Napi::Array>().Length() != uint32_t(size))
      ThrowTorchError(env, op, "peers must be {addresses, nodes}, one entry per rank");
    for (uint32_t r = 0; r < uint32_t(size); r++) {
      peerAddress.push_back(StrArg(env, a.As<Napi::Array>().Get(r), op, "peers.addresses[r]"));
      peerNode.push_back(IntArg(env, n.As<Napi::Array>().Get(r), op, "peers.nodes[r]", 0, 1 << 20));
    }
  }
  if (backend != "gloo" && backend != "nccl")
    ThrowTorchError(env, op, "backend must be 'gloo' or 'nccl', got '" + backend + "'");
#ifndef USE_C10D_GLOO
  if (backend == "gloo")
    ThrowTorchError(env, op, "this build of soco-train has no Gloo backend (gloo headers were not found at build time)");
#endif
#ifndef SOCO_HAVE_NCCL
  if (backend == "nccl")
    ThrowTorchError(env, op, "the NCCL backend needs soco-train built against a CUDA LibTorch");
#endif
  auto g = c10::make_intrusive<Group>();
  g->rank = rank;
  g->size = size;
  g->nccl = backend == "nccl";
  g->device = device;
  g->timeout = timeout;
  g->peerAddress = std::move(peerAddress);
  g->peerNode = std::move(peerNode);
#ifdef SOCO_HAVE_NCCL
  // NCCL reads it when the first communicator forms (lazily, at the first collective); set here, on
  // the JS thread, before any NCCL thread exists. "=" makes NCCL match the name exactly.
  if (g->nccl && !ncclIfname.empty()) setenv("NCCL_SOCKET_IFNAME", ("=" + ncclIfname).c_str(), /*overwrite=*/0);
#endif
  auto prefixed = c10::make_intrusive<c10d::PrefixStore>(prefix, store);
  return Task::Start(
      env, op,
      [=] {
        try {
#ifdef USE_C10D_GLOO
          if (!g->nccl) {
            auto o = c10d::ProcessGroupGloo::Options::create(timeout);
            const char* ifname = std::getenv("GLOO_SOCKET_IFNAME");
            if (ifname && *ifname) {
              std::stringstream ss(ifname);
              for (std::string name; std::getline(ss, name, ',');)
                if (!name.empty()) o->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(name));
            } else if (!glooHost.empty()) {
              o->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(glooHost));
            } else {
              o->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
            }
            o->threads = 2;
            g->pg = c10::make_intrusive<c10d::ProcessGroupGloo>(prefixed, rank, size, o);
          }
#endif
#ifdef SOCO_HAVE_NCCL
          if (g->nccl) {
            auto o = c10d::ProcessGroupNCCL::Options::create();
            o->timeout = timeout;
            g->pg = c10::make_intrusive<c10d::ProcessGroupNCCL>(prefixed, rank, size, o);
          }
#endif
        } catch (const std::exception&) {
          std::string m = Describe(std::current_exception());
          throw std::runtime_error(g->Where() + ": cannot form the process group within " +
                                   std::to_string(timeout.count()) +
                                   " ms (are all ranks started, and can they reach each other?): " + m +
                                   g->Blame(m));
        }
        if (!g->pg) throw std::runtime_error("backend " + backend + " is not available in this build");
      },
      [=](Napi::Env env) { return Wrap(env, new c10::intrusive_ptr<Group>(g), kGroupTag); });
}

// destroyGroup(group): drops this handle's reference now instead of at garbage collection.
Napi::Value DestroyGroup(const Napi::CallbackInfo& info) {
  auto* box = Unwrap<c10::intrusive_ptr<Group>>(info.Env(), info[0], kGroupTag, "dist.destroyGroup", "group");
  box->reset();
  return info.Env().Undefined();
}

Napi::Value GroupInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Group& g = GroupArg(env, info[0], "dist.groupInfo");
  Napi::Object o = Napi::Object::New(env);
  o.Set("rank", g.rank);
  o.Set("size", g.size);
  o.Set("backend", g.nccl ? "nccl" : "gloo");
  o.Set("timeoutMs", double(g.timeout.count()));
  o.Set("failed", g.failed.load());
  return o;
}

// ---- collectives ----

c10d::ReduceOp ReduceOpArg(Napi::Env env, const Napi::Value& v, const char* op, bool* average) {
  std::string name = StrArg(env, v, op, "op");
  *average = false;
  if (name == "sum") return c10d::ReduceOp::SUM;
  if (name == "max") return c10d::ReduceOp::MAX;
  if (name == "min") return c10d::ReduceOp::MIN;
  if (name == "avg") {
    *average = true;
    return c10d::ReduceOp::SUM;  // Gloo has no AVG: sum, then divide by the group size
  }
  ThrowTorchError(env, op, "op must be 'sum', 'avg', 'max' or 'min', got '" + name + "'");
}

// allReduce(group, tensor, op, timeoutMs) -> Promise<void>; in place, as torch.distributed.
Napi::Value AllReduce(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* op = "dist.allReduce";
  auto g = GroupPtr(env, info[0], op);
  at::Tensor t = Tensors(env).Get(env, info[1], op, "tensor");
  bool average;
  c10d::ReduceOp rop = ReduceOpArg(env, info[2], op, &average);
  Ms timeout = TimeoutArg(env, info[3], op);
  if (average && !at::isFloatingType(t.scalar_type()))
    ThrowTorchError(env, op, "op 'avg' needs a floating-point tensor");
  c10::intrusive_ptr<c10d::Work> work = Guard(env, op, [&] {
    return Launch(*g, "allReduce", [&] {
      std::vector<at::Tensor> v{t};
      c10d::AllreduceOptions o;
      o.reduceOp = rop;
      o.timeout = timeout;
      return g->pg->allreduce(v, o);
    });
  });
  return Task::Start(env, op, [=] {
    WaitWork(*g, work, timeout, true, "allReduce");
    if (average) {
      at::NoGradGuard ng;
      t.div_(g->size);
    }
  });
}

// broadcast(group, tensor, src, timeoutMs) -> Promise<void>; in place.
Napi::Value Broadcast(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* op = "dist.broadcast";
  auto g = GroupPtr(env, info[0], op);
  at::Tensor t = Tensors(env).Get(env, info[1], op, "tensor");
  int src = IntArg(env, info[2], op, "src", 0, g->size - 1);
  Ms timeout = TimeoutArg(env, info[3], op);
  c10::intrusive_ptr<c10d::Work> work = Guard(env, op, [&] {
    return Launch(*g, "broadcast", [&] {
      std::vector<at::Tensor> v{t};
      c10d::BroadcastOptions o;
      o.rootRank = src;
      o.timeout = timeout;
      return g->pg->broadcast(v, o);
    });
  });
  return Task::Start(env, op, [=] { WaitWork(*g, work, timeout, true, "broadcast"); });
}

// allGather(group, tensor, timeoutMs) -> Promise<handle[]>: one new tensor per rank.
Napi::Value AllGather(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* op = "dist.allGather";
  auto g = GroupPtr(env, info[0], op);
  at::Tensor t = Tensors(env).Get(env, info[1], op, "tensor");
  Ms timeout = TimeoutArg(env, info[2], op);
  auto outs = std::make_shared<std::vector<at::Tensor>>();
  c10::intrusive_ptr<c10d::Work> work = Guard(env, op, [&] {
    at::Tensor in = t.contiguous();
    for (int r = 0; r < g->size; r++) outs->push_back(at::empty_like(in));
    return Launch(*g, "allGather", [&] {
      std::vector<std::vector<at::Tensor>> o{*outs};
      std::vector<at::Tensor> i{in};
      c10d::AllgatherOptions opts;
      opts.timeout = timeout;
      auto w = g->pg->allgather(o, i, opts);
      *outs = o[0];  // NCCL fills its own copies; take what the work writes
      return w;
    });
  });
  return Task::Start(
      env, op, [=] { WaitWork(*g, work, timeout, true, "allGather"); },
      [=](Napi::Env env) {
        Napi::Array arr = Napi::Array::New(env, outs->size());
        for (size_t r = 0; r < outs->size(); r++) arr[uint32_t(r)] = Tensors(env).Put(env, (*outs)[r]);
        return Napi::Value(arr);
      });
}

// barrier(group, timeoutMs) -> Promise<void>
Napi::Value Barrier(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* op = "dist.barrier";
  auto g = GroupPtr(env, info[0], op);
  Ms timeout = TimeoutArg(env, info[1], op);
  c10::intrusive_ptr<c10d::Work> work = Guard(env, op, [&] {
    return Launch(*g, "barrier", [&] {
      c10d::BarrierOptions o;
      o.timeout = timeout;
      if (g->nccl && g->device >= 0) o.device_ids = {g->device};
      return g->pg->barrier(o);
    });
  });
  return Task::Start(env, op, [=] { WaitWork(*g, work, timeout, true, "barrier"); });
}

// ---- gradient all-reduce, overlapped with backward ----
//
// Parameters are packed into buckets in reverse order (gradients arrive roughly from the last layer
// back). A post hook on each parameter's AccumulateGrad node marks its gradient ready; when every
// gradient of a bucket is ready, the bucket is flattened and its all-reduce started while backward
// goes on. Buckets start strictly in index order, so every rank issues the same collectives in the
// same order whatever its autograd timing. finish() starts what is left, waits, and writes the
// averages back into .grad. A parameter without a gradient on a rank counts as zero there; one
// without a gradient on every rank keeps none (as DistributedDataParallel with
// find_unused_parameters), which each bucket learns from one "had a gradient" slot per parameter
// appended to its buffer, so no extra collective is needed.

struct Reducer;

struct ReadyHook : torch::autograd::FunctionPostHook {
  std::weak_ptr<Reducer> reducer;
  size_t index;
  ReadyHook(std::weak_ptr<Reducer> r, size_t i) : reducer(std::move(r)), index(i) {}
  torch::autograd::variable_list operator()(const torch::autograd::variable_list& outputs,
                                            const torch::autograd::variable_list&) override;
};

struct Bucket {
  std::vector<size_t> params;
  std::vector<int64_t> offsets;
  int64_t numel = 0;  // gradient elements; flat holds numel + params.size() (the used flags)
  at::Tensor flat;
  bool anyMissing = false;  // some parameter of this bucket had no gradient on this rank
  size_t pending = 0;
  bool launched = false;
  bool overlapped = false;
  c10::intrusive_ptr<c10d::Work> work;
};

struct Reducer : std::enable_shared_from_this<Reducer> {
  c10::intrusive_ptr<Group> group;
  std::vector<at::Tensor> params;
  // Held here because a parameter keeps its AccumulateGrad node only weakly: without this the node
  // (and the hook on it) would be rebuilt on every backward.
  std::vector<std::shared_ptr<torch::autograd::Node>> accumulators;
  std::vector<uintptr_t> hookKeys;
  std::vector<size_t> bucketOf;
  std::vector<int> hits;
  std::vector<Bucket> buckets;
  std::mutex mu;
  bool armed = false;
  bool busy = false;  // between finish() and its completion
  int passes = 1;
  size_t next = 0;
  std::string lateError;

  void Reset() {
    std::fill(hits.begin(), hits.end(), 0);
    for (auto& b : buckets) {
      b.pending = b.params.size();
      b.launched = false;
      b.overlapped = false;
      b.work.reset();
    }
    next = 0;
    lateError.clear();
  }

  // Called with mu held.
  void LaunchBucket(Bucket& b, bool inBackward) {
    at::NoGradGuard ng;
    std::vector<float> used(b.params.size());
    b.anyMissing = false;
    for (size_t k = 0; k < b.params.size(); k++) {
      const at::Tensor& p = params[b.params[k]];
      at::Tensor dst = b.flat.narrow(0, b.offsets[k], p.numel());
      const at::Tensor& grad = p.grad();
      used[k] = grad.defined() ? 1.f : 0.f;
      if (grad.defined()) {
        dst.copy_(grad.reshape(-1));
      } else {
        dst.zero_();
        b.anyMissing = true;
      }
    }
    b.flat.narrow(0, b.numel, int64_t(used.size()))
        .copy_(at::from_blob(used.data(), {int64_t(used.size())}, at::kFloat));
    // Dividing before the sum keeps the magnitudes of fp16 buckets in range, as DDP does.
    b.flat.div_(group->size);
    b.work = Launch(*group, "gradient all-reduce", [&] {
      std::vector<at::Tensor> v{b.flat};
      c10d::AllreduceOptions o;
      o.timeout = group->timeout;
      return group->pg->allreduce(v, o);
    });
    b.launched = true;
    b.overlapped = inBackward;
  }

  void LaunchReadyInOrder() {
    while (next < buckets.size() && buckets[next].pending == 0) LaunchBucket(buckets[next++], true);
  }

  void MarkReady(size_t i) {
    std::lock_guard<std::mutex> lock(mu);
    if (!armed) return;
    Bucket& b = buckets[bucketOf[i]];
    if (b.launched) {
      if (lateError.empty())
        lateError = "the gradient of parameter " + std::to_string(i) +
                    " arrived after its bucket was already reduced: call prepare(passes) with the number of "
                    "backward passes of this step";
      return;
    }
    if (++hits[i] == passes) {
      b.pending--;
      if (b.pending == 0) LaunchReadyInOrder();
    }
  }
};

torch::autograd::variable_list ReadyHook::operator()(const torch::autograd::variable_list& outputs,
                                                     const torch::autograd::variable_list&) {
  if (auto r = reducer.lock()) r->MarkReady(index);
  return outputs;
}

struct ReducerBox {
  std::shared_ptr<Reducer> r;
  ~ReducerBox() {
    if (!r) return;
    for (size_t i = 0; i < r->accumulators.size(); i++) r->accumulators[i]->del_post_hook(r->hookKeys[i]);
  }
};

// newReducer(group, params[], bucketCapBytes) -> reducer
Napi::Value NewReducer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* op = "dist.newReducer";
  auto g = GroupPtr(env, info[0], op);
  if (!info[1].IsArray()) ThrowTorchError(env, op, "params must be an array of tensors");
  double cap = info[2].IsNumber() ? info[2].As<Napi::Number>().DoubleValue() : -1;
  if (!(cap >= 1)) ThrowTorchError(env, op, "bucketCapBytes must be a positive number");
  Napi::Array arr = info[1].As<Napi::Array>();
  auto r = std::make_shared<Reducer>();
  r->group = g;
  for (uint32_t i = 0; i < arr.Length(); i++) {
    const at::Tensor& p = Tensors(env).Get(env, arr[i], op, "params[" + std::to_string(i) + "]");
    if (!p.is_leaf() || !p.requires_grad())
      ThrowTorchError(env, op, "params[" + std::to_string(i) + "] must be a leaf tensor that requires grad");
    for (size_t j = 0; j < r->params.size(); j++)
      if (r->params[j].is_same(p))
        ThrowTorchError(env, op, "params[" + std::to_string(i) + "] repeats params[" + std::to_string(j) + "]");
    r->params.push_back(p);
  }
  if (r->params.empty()) ThrowTorchError(env, op, "params is empty");
  // Reverse order; a new bucket when the cap is reached or dtype/device change.
  r->bucketOf.assign(r->params.size(), 0);
  Guard(env, op, [&] {
    Bucket cur;
    int64_t bytes = 0, numel = 0;
    auto close = [&] {
      if (cur.params.empty()) return;
      const at::Tensor& p0 = r->params[cur.params[0]];
      cur.numel = numel;
      cur.flat = at::zeros({numel + int64_t(cur.params.size())}, p0.options().requires_grad(false));
      for (size_t pi : cur.params) r->bucketOf[pi] = r->buckets.size();
      r->buckets.push_back(std::move(cur));
      cur = Bucket();
      bytes = numel = 0;
    };
    for (size_t k = r->params.size(); k-- > 0;) {
      const at::Tensor& p = r->params[k];
      if (!cur.params.empty()) {
        const at::Tensor& p0 = r->params[cur.params[0]];
        if (p.scalar_type() != p0.scalar_type() || p.device() != p0.device() || bytes >= int64_t(cap)) close();
      }
      cur.params.push_back(k);
      cur.offsets.push_back(numel);
      numel += p.numel();
      bytes += p.numel() * int64_t(p.element_size());
    }
    close();
    for (size_t i = 0; i < r->params.size(); i++) {
      auto acc = torch::autograd::impl::grad_accumulator(r->params[i]);
      r->hookKeys.push_back(acc->add_post_hook(std::make_unique<ReadyHook>(r, i)));
      r->accumulators.push_back(std::move(acc));
    }
  });
  r->hits.assign(r->params.size(), 0);
  r->Reset();
  return Wrap(env, new ReducerBox{r}, kReducerTag);
}

Reducer& ReducerArg(Napi::Env env, const Napi::Value& v, const char* op) {
  auto* box = Unwrap<ReducerBox>(env, v, kReducerTag, op, "reducer");
  if (!box->r) ThrowTorchError(env, op, "the reducer was disposed");
  return *box->r;
}

// The autograd nodes reachable from `roots` (what backward from them will run).
std::unordered_set<const torch::autograd::Node*> ReachableNodes(const std::vector<at::Tensor>& roots) {
  std::unordered_set<const torch::autograd::Node*> seen;
  std::vector<torch::autograd::Node*> stack;
  for (const at::Tensor& t : roots) {
    std::shared_ptr<torch::autograd::Node> fn = t.grad_fn();
    if (!fn && t.requires_grad() && t.is_leaf()) fn = torch::autograd::impl::grad_accumulator(t);
    if (fn && seen.insert(fn.get()).second) stack.push_back(fn.get());
  }
  while (!stack.empty()) {
    torch::autograd::Node* n = stack.back();
    stack.pop_back();
    for (const auto& e : n->next_edges())
      if (e.function && seen.insert(e.function.get()).second) stack.push_back(e.function.get());
  }
  return seen;
}

// reducerPrepare(reducer, passes, roots[] | null): arms the hooks for the coming backward pass(es).
// With roots (the tensors backward will start from), parameters they do not reach are ready at
// once, as DDP's find_unused_parameters does; without, a bucket holding a parameter that gets no
// gradient (and every bucket after it) waits for finish().
Napi::Value ReducerPrepare(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* op = "dist.reducerPrepare";
  Reducer& r = ReducerArg(env, info[0], op);
  int passes = IntArg(env, info[1], op, "passes", 1, 1 << 20);
  std::vector<at::Tensor> roots;
  bool haveRoots = info[2].IsArray();
  if (haveRoots) {
    Napi::Array arr = info[2].As<Napi::Array>();
    for (uint32_t i = 0; i < arr.Length(); i++)
      roots.push_back(Tensors(env).Get(env, arr[i], op, "roots[" + std::to_string(i) + "]"));
  }
  std::lock_guard<std::mutex> lock(r.mu);
  if (r.busy) ThrowTorchError(env, op, "the previous finish() has not completed");
  r.Reset();
  r.passes = passes;
  r.armed = true;
  if (haveRoots) {
    Guard(env, op, [&] {
      auto reach = ReachableNodes(roots);
      for (size_t i = 0; i < r.params.size(); i++) {
        if (reach.count(r.accumulators[i].get())) continue;
        r.hits[i] = passes;
        r.buckets[r.bucketOf[i]].pending--;
      }
      r.LaunchReadyInOrder();
    });
  }
  return env.Undefined();
}

// Waits for every bucket and writes the averages into .grad; runs on a libuv thread (finish) or
// on the JS thread (finishSync). Leaves the per-step state clean either way.
void CompleteReduction(Reducer& r) {
  struct Done {
    Reducer& r;
    ~Done() {
      std::lock_guard<std::mutex> lock(r.mu);
      r.busy = false;
      r.armed = false;
      r.Reset();  // a finish() without prepare() must start from clean per-step state
    }
  } done{r};
  for (auto& b : r.buckets) WaitWork(*r.group, b.work, r.group->timeout, false, "gradient all-reduce");
  at::NoGradGuard ng;
  for (auto& b : r.buckets) {
    // Only a rank that lacked a gradient needs to know whether any rank had one (a host read).
    std::vector<float> used;
    if (b.anyMissing) {
      at::Tensor f = b.flat.narrow(0, b.numel, int64_t(b.params.size())).to(at::kCPU, at::kFloat);
      used.assign(f.data_ptr<float>(), f.data_ptr<float>() + f.numel());
    }
    for (size_t k = 0; k < b.params.size(); k++) {
      if (b.anyMissing && !(used[k] > 0)) continue;  // no gradient on any rank: keep none
      at::Tensor& p = r.params[b.params[k]];
      at::Tensor avg = b.flat.narrow(0, b.offsets[k], p.numel()).view(p.sizes());
      at::Tensor& grad = p.mutable_grad();
      if (grad.defined())
        grad.copy_(avg);
      else
        grad = avg.clone();
    }
  }
}

// Starts the buckets not started during backward (in order); returns the count that had started.
size_t LaunchRest(Napi::Env env, Reducer& r, const char* op) {
  std::lock_guard<std::mutex> lock(r.mu);
  if (r.busy) ThrowTorchError(env, op, "finish() is already in progress");
  std::string late = r.lateError;
  if (!late.empty()) {
    r.armed = false;
    r.Reset();
    ThrowTorchError(env, op, r.group->Where() + ": " + late);
  }
  Guard(env, op, [&] {
    for (; r.next < r.buckets.size(); r.next++) r.LaunchBucket(r.buckets[r.next], false);
  });
  r.armed = false;
  r.busy = true;
  size_t overlapped = 0;
  for (auto& b : r.buckets) overlapped += b.overlapped ? 1 : 0;
  return overlapped;
}

Napi::Value ReduceStats(Napi::Env env, size_t buckets, size_t overlapped) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("buckets", double(buckets));
  o.Set("overlapped", double(overlapped));
  return o;
}

// reducerFinish(reducer) -> Promise<{buckets, overlapped}>: every .grad now holds the average over
// all ranks. Do not touch the gradients before it resolves.
Napi::Value ReducerFinish(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* op = "dist.reducerFinish";
  auto* box = Unwrap<ReducerBox>(env, info[0], kReducerTag, op, "reducer");
  if (!box->r) ThrowTorchError(env, op, "the reducer was disposed");
  std::shared_ptr<Reducer> r = box->r;
  size_t overlapped = LaunchRest(env, *r, op);
  size_t nb = r->buckets.size();
  return Task::Start(
      env, op, [r] { CompleteReduction(*r); }, [=](Napi::Env env) { return ReduceStats(env, nb, overlapped); });
}

// reducerFinishSync(reducer) -> {buckets, overlapped}: the same on the JS thread, for synchronous
// training steps. With NCCL the wait is stream-ordered, so the host does not stall; with Gloo the
// thread waits for the all-reduce, as the (synchronous) CPU step does for every op anyway.
Napi::Value ReducerFinishSync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* op = "dist.reducerFinishSync";
  Reducer& r = ReducerArg(env, info[0], op);
  size_t overlapped = LaunchRest(env, r, op);
  Guard(env, op, [&] { CompleteReduction(r); });
  return ReduceStats(env, r.buckets.size(), overlapped);
}

// reducerInfo(reducer) -> {buckets: [[paramIndex...], ...]}
Napi::Value ReducerInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Reducer& r = ReducerArg(env, info[0], "dist.reducerInfo");
  Napi::Array out = Napi::Array::New(env, r.buckets.size());
  for (size_t b = 0; b < r.buckets.size(); b++) {
    Napi::Array ps = Napi::Array::New(env, r.buckets[b].params.size());
    for (size_t k = 0; k < r.buckets[b].params.size(); k++) ps[uint32_t(k)] = double(r.buckets[b].params[k]);
    out[uint32_t(b)] = ps;
  }
  return out;
}

Napi::Value ReducerDispose(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto* box = Unwrap<ReducerBox>(env, info[0], kReducerTag, "dist.reducerDispose", "reducer");
  if (box->r && box->r->busy) ThrowTorchError(env, "dist.reducerDispose", "finish() is still in progress");
  if (box->r) {
    for (size_t i = 0; i < box->r->accumulators.size(); i++)
      box->r->accumulators[i]->del_post_hook(box->r->hookKeys[i]);
    box->r.reset();
  }
  return env.Undefined();
}

// ---- SyncBatchNorm ----
//
// As PyTorch's SyncBatchNorm function: forward gathers every rank's per-channel (count, mean,
// biased var) and combines them (Chan et al.: no cancellation, unlike raw sum/sum-of-squares in
// float), normalises with the global statistics and updates the running statistics with the
// unbiased global variance; backward all-reduces the per-channel sums of dy and dy*(x-mean) so that
// each rank's input gradient is that of the global batch. PyTorch's own kernels for this
// (batch_norm_stats, batch_norm_gather_stats_with_counts, ...) exist for CUDA only, so the
// statistics are composed from ops that run on every device. The collectives are waited for inside
// forward and backward (autograd cannot await); on CUDA with NCCL that wait is stream-ordered.

std::vector<int64_t> ReduceDims(const at::Tensor& x) {
  std::vector<int64_t> dims{0};
  for (int64_t d = 2; d < x.dim(); d++) dims.push_back(d);
  return dims;
}

std::vector<int64_t> ChannelShape(const at::Tensor& x) {
  std::vector<int64_t> s(x.dim(), 1);
  s[1] = x.size(1);
  return s;
}

// Updated in place without gradient; a non-tensor argument so autograd does not treat it as input.
struct RunningStats {
  at::Tensor mean, var;
};

struct SyncBN : torch::autograd::Function<SyncBN> {
  // Optional tensors: an absent weight or bias is no autograd input (no edge), so the edge index of
  // each input is saved for needs_input_grad().
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, at::Tensor x, c10::optional<at::Tensor> weightOpt,
                            c10::optional<at::Tensor> biasOpt, RunningStats running, double momentum, double eps,
                            c10::intrusive_ptr<Group> g) {
    at::Tensor weight = weightOpt.value_or(at::Tensor()), bias = biasOpt.value_or(at::Tensor());
    at::Tensor runningMean = running.mean, runningVar = running.var;
    const int64_t C = x.size(1);
    const int64_t n = C > 0 ? x.numel() / C : 0;
    auto dims = ReduceDims(x);
    bool reduced = x.scalar_type() == at::kHalf || x.scalar_type() == at::kBFloat16;
    at::Tensor xf = reduced ? x.to(at::kFloat) : x;
    at::Tensor mean, var;
    if (n > 0) {
      std::tie(var, mean) = at::var_mean(xf, dims, /*unbiased=*/false, /*keepdim=*/false);
    } else {
      mean = at::zeros({C}, xf.options());
      var = at::zeros({C}, xf.options());
    }
    at::Tensor local = at::cat({at::full({1}, double(n), xf.options().dtype(at::kDouble)),
                                mean.to(at::kDouble), var.to(at::kDouble)});
    std::vector<at::Tensor> outs;
    for (int r = 0; r < g->size; r++) outs.push_back(at::empty_like(local));
    auto work = Launch(*g, "syncBatchNorm forward", [&] {
      std::vector<std::vector<at::Tensor>> o{outs};
      std::vector<at::Tensor> i{local};
      c10d::AllgatherOptions opts;
      opts.timeout = g->timeout;
      auto w = g->pg->allgather(o, i, opts);
      outs = o[0];
      return w;
    });
    WaitWork(*g, work, g->timeout, false, "syncBatchNorm forward");
    at::Tensor all = at::stack(outs);  // [world, 1 + 2C], float64
    at::Tensor counts = all.narrow(1, 0, 1), means = all.narrow(1, 1, C), vars = all.narrow(1, 1 + C, C);
    double total = counts.sum().item<double>();
    if (total <= 1)
      throw std::runtime_error(g->Where() + ": syncBatchNorm: expected more than 1 value per channel when training, "
                               "got " + std::to_string(int64_t(total)) + " over all ranks");
    at::Tensor gmean = (counts * means).sum(0) / total;
    at::Tensor gvar = (counts * (vars + (means - gmean).pow(2))).sum(0) / total;
    if (runningMean.defined()) {
      runningMean.mul_(1 - momentum).add_(gmean.to(runningMean.scalar_type()), momentum);
    }
    if (runningVar.defined()) {
      runningVar.mul_(1 - momentum).add_((gvar * (total / (total - 1))).to(runningVar.scalar_type()), momentum);
    }
    at::Tensor meanF = gmean.to(xf.scalar_type()), varF = gvar.to(xf.scalar_type());
    at::Tensor invstd = (gvar + eps).rsqrt().to(xf.scalar_type());
    at::Tensor y = at::batch_norm(xf, weight.defined() ? weight.to(xf.scalar_type()) : weight,
                                  bias.defined() ? bias.to(xf.scalar_type()) : bias, meanF, varF,
                                  /*training=*/false, 0.0, eps, /*cudnn_enabled=*/true);
    if (y.scalar_type() != x.scalar_type()) y = y.to(x.scalar_type());
    ctx->save_for_backward({x, weight});
    ctx->saved_data["mean"] = meanF;
    ctx->saved_data["invstd"] = invstd;
    ctx->saved_data["total"] = total;
    ctx->saved_data["group"] = c10::IValue::make_capsule(g);
    ctx->saved_data["weightEdge"] = int64_t(weight.defined() ? 1 : -1);
    ctx->saved_data["biasEdge"] = int64_t(bias.defined() ? (weight.defined() ? 2 : 1) : -1);
    return y;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto saved = ctx->get_saved_variables();
    at::Tensor x = saved[0], weight = saved[1];
    at::Tensor mean = ctx->saved_data["mean"].toTensor();
    at::Tensor invstd = ctx->saved_data["invstd"].toTensor();
    double total = ctx->saved_data["total"].toDouble();
    auto g = c10::static_intrusive_pointer_cast<Group>(ctx->saved_data["group"].toCapsule());
    at::Tensor dy = grads[0];
    at::ScalarType ct = mean.scalar_type();
    at::Tensor xf = x.scalar_type() == ct ? x : x.to(ct);
    at::Tensor dyf = dy.scalar_type() == ct ? dy : dy.to(ct);
    auto dims = ReduceDims(x);
    auto shape = ChannelShape(x);
    at::Tensor xmu = xf - mean.view(shape);
    at::Tensor sumDy = dyf.sum(dims);
    at::Tensor sumDyXmu = (dyf * xmu).sum(dims);
    at::Tensor gx, gw, gb;
    // Weight and bias gradients stay local: the gradient all-reduce averages them with the rest.
    int64_t weightEdge = ctx->saved_data["weightEdge"].toInt(), biasEdge = ctx->saved_data["biasEdge"].toInt();
    if (weightEdge >= 0 && ctx->needs_input_grad(weightEdge)) gw = (sumDyXmu * invstd).to(weight.scalar_type());
    if (biasEdge >= 0 && ctx->needs_input_grad(biasEdge)) gb = sumDy.to(weight.defined() ? weight.scalar_type() : ct);
    if (ctx->needs_input_grad(0)) {
      const int64_t C = x.size(1);
      at::Tensor combined = at::cat({sumDy, sumDyXmu});
      auto work = Launch(*g, "syncBatchNorm backward", [&] {
        std::vector<at::Tensor> v{combined};
        c10d::AllreduceOptions o;
        o.timeout = g->timeout;
        return g->pg->allreduce(v, o);
      });
      WaitWork(*g, work, g->timeout, false, "syncBatchNorm backward");
      at::Tensor meanDy = combined.narrow(0, 0, C) / total;
      at::Tensor meanDyXmu = combined.narrow(0, C, C) / total;
      at::Tensor scale = weight.defined() ? invstd * weight.to(ct) : invstd;
      gx = (dyf - meanDy.view(shape) - xmu * (invstd * invstd * meanDyXmu).view(shape)) * scale.view(shape);
      if (gx.scalar_type() != x.scalar_type()) gx = gx.to(x.scalar_type());
    }
    return {gx, gw, gb, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

// syncBatchNorm(group, input, weight|null, bias|null, runningMean|null, runningVar|null, momentum, eps)
// -> handle. Training-mode batch norm over the union of every rank's batch.
Napi::Value SyncBatchNorm(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* op = "dist.syncBatchNorm";
  auto g = GroupPtr(env, info[0], op);
  TensorTable& tt = Tensors(env);
  at::Tensor x = tt.Get(env, info[1], op, "input");
  auto opt = [&](size_t i, const char* what) {
    return info[i].IsNull() || info[i].IsUndefined() ? at::Tensor() : tt.Get(env, info[i], op, what);
  };
  at::Tensor w = opt(2, "weight"), b = opt(3, "bias"), rm = opt(4, "runningMean"), rv = opt(5, "runningVar");
  if (!info[6].IsNumber() || !info[7].IsNumber()) ThrowTorchError(env, op, "momentum and eps must be numbers");
  double momentum = info[6].As<Napi::Number>().DoubleValue(), eps = info[7].As<Napi::Number>().DoubleValue();
  if (x.dim() < 2) ThrowTorchError(env, op, "input must have at least 2 dims (N, C, ...), got " + std::to_string(x.dim()));
  int64_t C = x.size(1);
  auto check = [&](const at::Tensor& t, const char* what) {
    if (t.defined() && (t.dim() != 1 || t.size(0) != C))
      ThrowTorchError(env, op, std::string(what) + " must have shape [" + std::to_string(C) + "] (input channels)");
  };
  check(w, "weight");
  check(b, "bias");
  check(rm, "runningMean");
  check(rv, "runningVar");
  return Guard(env, op, [&] {
    auto opt = [](const at::Tensor& t) { return t.defined() ? c10::optional<at::Tensor>(t) : c10::nullopt; };
    at::Tensor y = SyncBN::apply(x, opt(w), opt(b), RunningStats{rm, rv}, momentum, eps, g);
    return Napi::Number::New(env, tt.Put(env, std::move(y)));
  });
}

// ---- the worker's process ----

// dieWithParent(parentPid) -> boolean: this process gets SIGKILL when its parent (our launcher)
// dies, however it dies (the worker runs in its own process group, so a SIGKILL to the launcher or
// the OOM killer reaches nothing else). False when the parent is already gone: it may have died
// before the signal was armed, and then no signal will come. True where the platform has no such
// signal (nothing armed, nothing known to be wrong).
Napi::Value DieWithParent(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int parent = IntArg(env, info[0], "dist.dieWithParent", "parentPid", 1, 1 << 30);
#ifdef __linux__
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0)
    ThrowTorchError(env, "dist.dieWithParent", std::string("prctl(PR_SET_PDEATHSIG) failed: ") + std::strerror(errno));
  return Napi::Boolean::New(env, getppid() == parent);
#else
  (void)parent;
  return Napi::Boolean::New(env, true);
#endif
}

// exitNow(code): ends the process without waiting for libuv's worker threads. A normal exit joins
// them, so one blocked in a rendezvous or in Gloo's connect (up to its timeout) would hold a
// process that was told to leave; JS's own output is already written (stderr and stdout are
// synchronous for files, pipes and terminals on Linux).
Napi::Value ExitNow(const Napi::CallbackInfo& info) {
  int code = IntArg(info.Env(), info[0], "dist.exitNow", "code", 0, 255);
  std::fflush(nullptr);
  std::_Exit(code);
}

}  // namespace

void InitDist(Napi::Env env, Napi::Object exports) {
  Napi::Object d = Napi::Object::New(env);
  auto fn = [&](const char* name, Napi::Function::Callback cb) { d.Set(name, Napi::Function::New(env, cb, name)); };
  fn("createStore", CreateStore);
  fn("storePort", StorePort);
  fn("storeSet", StoreSet);
  fn("storeGet", StoreGet);
  fn("storeAdd", StoreAdd);
  fn("storeCheck", StoreCheck);
  fn("createGroup", CreateGroup);
  fn("destroyGroup", DestroyGroup);
  fn("groupInfo", GroupInfo);
  fn("allReduce", AllReduce);
  fn("broadcast", Broadcast);
  fn("allGather", AllGather);
  fn("barrier", Barrier);
  fn("newReducer", NewReducer);
  fn("reducerPrepare", ReducerPrepare);
  fn("reducerFinish", ReducerFinish);
  fn("reducerFinishSync", ReducerFinishSync);
  fn("reducerInfo", ReducerInfo);
  fn("reducerDispose", ReducerDispose);
  fn("syncBatchNorm", SyncBatchNorm);
  fn("dieWithParent", DieWithParent);
  fn("exitNow", ExitNow);
  Napi::Object backends = Napi::Object::New(env);
#ifdef USE_C10D_GLOO
  backends.Set("gloo", true);
#else
  backends.Set("gloo", false);
#endif
#ifdef SOCO_HAVE_NCCL
  backends.Set("nccl", true);
  // The NCCL headers compiled in (the library loaded is LibTorch's).
  d.Set("ncclVersion", std::to_string(NCCL_MAJOR) + "." + std::to_string(NCCL_MINOR) + "." + std::to_string(NCCL_PATCH));
#else
  backends.Set("nccl", false);
  d.Set("ncclVersion", env.Null());
#endif
  d.Set("backends", backends);
  exports.Set("dist", d);
}

}  // namespace soco
