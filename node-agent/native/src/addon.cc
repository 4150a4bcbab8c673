#include <napi.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include "connection.h"
#include "domain.h"
#include "events.h"

namespace {
// libvirt prints every error to stderr by default; errors reach JS as rejections instead.
void SilentErrors(void*, virErrorPtr) {}
}  // namespace

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  static bool started = false;
  if (!started) {
    virSetErrorFunc(nullptr, SilentErrors);
    if (virInitialize() < 0) {
      Napi::Error::New(env, "virInitialize failed").ThrowAsJavaScriptException();
      return exports;
    }
    std::string error;
    if (!StartEventLoop(&error)) {
      Napi::Error::New(env, error).ThrowAsJavaScriptException();
      return exports;
    }
    started = true;
  }
  Connection::Init(env, exports);
  Domain::Init(env, exports);
  return exports;
}

NODE_API_MODULE(kova_libvirt, Init)
