// Filesystem bindings Node lacks: flock(2), the advisory lock behind lib/io/lock.ts. The kernel
// drops it when its holder dies (kill -9 included), so a lock can never outlive its process.
#include <napi.h>

#include <sys/file.h>

#include <cerrno>
#include <cstring>
#include <string>

namespace soco {
namespace {

// tryLockFile(fd): takes an exclusive flock on fd without waiting. true: taken (or already ours);
// false: another open file description holds it. Other failures throw with errno's text.
Napi::Value TryLockFile(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) {
    Napi::TypeError::New(env, "tryLockFile: argument 'fd' must be a file descriptor (number)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  const double v = info[0].As<Napi::Number>().DoubleValue();
  if (!(v >= 0 && v <= 2147483647.0 && static_cast<double>(static_cast<int>(v)) == v)) {
    Napi::TypeError::New(env, "tryLockFile: argument 'fd' must be a non-negative integer").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  int rc;
  do rc = flock(static_cast<int>(v), LOCK_EX | LOCK_NB); while (rc != 0 && errno == EINTR);
  if (rc == 0) return Napi::Boolean::New(env, true);
  if (errno == EWOULDBLOCK) return Napi::Boolean::New(env, false);
  Napi::Error::New(env, std::string("tryLockFile: flock failed: ") + std::strerror(errno)).ThrowAsJavaScriptException();
  return env.Undefined();
}

}  // namespace

void InitIo(Napi::Env env, Napi::Object exports) {
  exports.Set("tryLockFile", Napi::Function::New(env, TryLockFile, "tryLockFile"));
}

}  // namespace soco
