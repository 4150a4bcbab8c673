// Runs a blocking libvirt call on libuv's thread pool and settles a Promise with its result.
// `work` runs off the JavaScript thread and must not touch N-API; `done` converts its result.
#pragma once
#include <napi.h>
#include <functional>
#include <optional>
#include "errors.h"

template <typename T>
class PromiseWorker : public Napi::AsyncWorker {
 public:
  using Work = std::function<T(std::optional<LibvirtError>&)>;
  using Done = std::function<Napi::Value(Napi::Env, T&)>;

  static Napi::Promise Start(Napi::Env env, Work work, Done done) {
    auto* w = new PromiseWorker(env, std::move(work), std::move(done));
    Napi::Promise p = w->deferred_.Promise();
    w->Queue();
    return p;
  }

 protected:
  void Execute() override { result_ = work_(error_); }
  void OnOK() override {
    Napi::HandleScope scope(Env());
    if (error_) {
      deferred_.Reject(error_->ToJs(Env()).Value());
      return;
    }
    try {
      deferred_.Resolve(done_(Env(), result_));
    } catch (const Napi::Error& e) {
      deferred_.Reject(e.Value());
    }
  }

 private:
  PromiseWorker(Napi::Env env, Work work, Done done)
      : Napi::AsyncWorker(env, "kova-libvirt"), deferred_(Napi::Promise::Deferred::New(env)),
        work_(std::move(work)), done_(std::move(done)) {}

  Napi::Promise::Deferred deferred_;
  Work work_;
  Done done_;
  T result_{};
  std::optional<LibvirtError> error_;
};

// Shorthand for calls that return 0 on success and -1 on failure.
inline Napi::Promise RunStatus(Napi::Env env, std::function<int()> call, const char* what) {
  return PromiseWorker<int>::Start(
      env,
      [call, what](std::optional<LibvirtError>& err) {
        int rc = call();
        if (rc < 0) err = LibvirtError::Last(what);
        return rc;
      },
      [](Napi::Env e, int&) { return e.Undefined(); });
}
