#pragma once
#include <napi.h>
#include <libvirt/libvirt.h>

// A libvirt domain. The JS object owns one reference to the virDomainPtr; each call in flight
// takes another, so a domain collected by GC mid-call stays valid until the call returns.
class Domain : public Napi::ObjectWrap<Domain> {
 public:
  static void Init(Napi::Env env, Napi::Object exports);
  static Napi::Object Wrap(Napi::Env env, virDomainPtr dom);  // takes ownership of dom
  explicit Domain(const Napi::CallbackInfo& info);
  ~Domain() override;

 private:
  static Napi::FunctionReference* constructor;
  virDomainPtr dom_ = nullptr;

  Napi::Value Name(const Napi::CallbackInfo& info);
  Napi::Value Uuid(const Napi::CallbackInfo& info);
  Napi::Value Create(const Napi::CallbackInfo& info);
  Napi::Value Shutdown(const Napi::CallbackInfo& info);
  Napi::Value Destroy(const Napi::CallbackInfo& info);
  Napi::Value Reboot(const Napi::CallbackInfo& info);
  Napi::Value Suspend(const Napi::CallbackInfo& info);
  Napi::Value Resume(const Napi::CallbackInfo& info);
  Napi::Value Undefine(const Napi::CallbackInfo& info);
  Napi::Value GetState(const Napi::CallbackInfo& info);
  Napi::Value GetInfo(const Napi::CallbackInfo& info);
  Napi::Value GetXMLDesc(const Napi::CallbackInfo& info);
  Napi::Value GetId(const Napi::CallbackInfo& info);
  Napi::Promise Status(Napi::Env env, int (*call)(virDomainPtr, unsigned int), unsigned int flags, const char* what);
};
