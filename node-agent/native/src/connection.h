#pragma once
#include <napi.h>
#include <libvirt/libvirt.h>
#include <mutex>
#include <vector>

// A libvirt connection. Every call that can block (most talk to the daemon) runs on the
// thread pool and returns a Promise.
class Connection : public Napi::ObjectWrap<Connection> {
 public:
  static void Init(Napi::Env env, Napi::Object exports);
  explicit Connection(const Napi::CallbackInfo& info);
  ~Connection() override;

 private:
  static Napi::FunctionReference* constructor;
  virConnectPtr conn_ = nullptr;
  std::vector<int> eventIds_;
  bool closeRegistered_ = false;

  static Napi::Value Open(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);
  Napi::Value IsAlive(const Napi::CallbackInfo& info);
  Napi::Value SetKeepAlive(const Napi::CallbackInfo& info);
  Napi::Value NodeInfo(const Napi::CallbackInfo& info);
  Napi::Value Versions(const Napi::CallbackInfo& info);
  Napi::Value DomainCapabilities(const Napi::CallbackInfo& info);
  Napi::Value ListAllDomains(const Napi::CallbackInfo& info);
  Napi::Value LookupByUUID(const Napi::CallbackInfo& info);
  Napi::Value LookupByName(const Napi::CallbackInfo& info);
  Napi::Value DefineXML(const Napi::CallbackInfo& info);
  Napi::Value OnLifecycleEvent(const Napi::CallbackInfo& info);
  Napi::Value OnClose(const Napi::CallbackInfo& info);
  Napi::Promise Lookup(Napi::Env env, std::function<virDomainPtr(virConnectPtr)> fn, const char* what);
  virConnectPtr Ref();
  bool Usable(Napi::Env env);
};
