#include "connection.h"
#include "async.h"
#include "domain.h"
#include "events.h"
#include <memory>
#include <string>

Napi::FunctionReference* Connection::constructor = nullptr;

namespace {
// A connection reference held for the duration of one call on a worker thread.
struct ConnRef {
  virConnectPtr c;
  explicit ConnRef(virConnectPtr conn) : c(conn) { virConnectRef(c); }
  ConnRef(const ConnRef& o) : c(o.c) { virConnectRef(c); }
  ~ConnRef() { virConnectClose(c); }
};

std::string VersionString(unsigned long v) {
  return std::to_string(v / 1000000) + "." + std::to_string((v / 1000) % 1000) + "." + std::to_string(v % 1000);
}
}  // namespace

void Connection::Init(Napi::Env env, Napi::Object exports) {
  Napi::Function fn = DefineClass(env, "Connection", {
      StaticMethod<&Connection::Open>("open"),
      InstanceMethod<&Connection::Close>("close"),
      InstanceMethod<&Connection::IsAlive>("isAlive"),
      InstanceMethod<&Connection::SetKeepAlive>("setKeepAlive"),
      InstanceMethod<&Connection::NodeInfo>("nodeInfo"),
      InstanceMethod<&Connection::Versions>("versions"),
      InstanceMethod<&Connection::DomainCapabilities>("domainCapabilities"),
      InstanceMethod<&Connection::ListAllDomains>("listAllDomains"),
      InstanceMethod<&Connection::LookupByUUID>("lookupByUUID"),
      InstanceMethod<&Connection::LookupByName>("lookupByName"),
      InstanceMethod<&Connection::DefineXML>("defineXML"),
      InstanceMethod<&Connection::OnLifecycleEvent>("onLifecycleEvent"),
      InstanceMethod<&Connection::OnClose>("onClose"),
  });
  constructor = new Napi::FunctionReference(Napi::Persistent(fn));
  exports.Set("Connection", fn);
}

Connection::Connection(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Connection>(info) {
  if (info.Length() < 1 || !info[0].IsExternal()) {
    Napi::TypeError::New(info.Env(), "use Connection.open(uri)").ThrowAsJavaScriptException();
    return;
  }
  conn_ = info[0].As<Napi::External<virConnect>>().Data();
}

Connection::~Connection() {
  if (!conn_) return;
  for (int id : eventIds_) virConnectDomainEventDeregisterAny(conn_, id);
  if (closeRegistered_) UnregisterClose(conn_);
  virConnectClose(conn_);
}

virConnectPtr Connection::Ref() { return conn_; }

bool Connection::Usable(Napi::Env env) {
  if (conn_) return true;
  Napi::Error err = Napi::Error::New(env, "the libvirt connection is closed");
  err.Set("code", Napi::Number::New(env, VIR_ERR_INVALID_CONN));
  err.Set("domain", Napi::Number::New(env, VIR_FROM_NONE));
  err.ThrowAsJavaScriptException();
  return false;
}

Napi::Value Connection::Open(const Napi::CallbackInfo& info) {
  std::string uri = info.Length() > 0 && info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : "";
  return PromiseWorker<virConnectPtr>::Start(
      info.Env(),
      [uri](std::optional<LibvirtError>& err) {
        virConnectPtr c = virConnectOpen(uri.empty() ? nullptr : uri.c_str());
        if (!c) err = LibvirtError::Last("virConnectOpen failed");
        return c;
      },
      [](Napi::Env env, virConnectPtr& c) -> Napi::Value {
        return constructor->New({Napi::External<virConnect>::New(env, c)});
      });
}

// Deregistering events is an RPC to the daemon: it runs on the worker with the close, so a
// hung libvirtd cannot freeze the JavaScript thread.
Napi::Value Connection::Close(const Napi::CallbackInfo& info) {
  if (!conn_) return RunStatus(info.Env(), [] { return 0; }, "");
  std::vector<int> ids;
  ids.swap(eventIds_);
  bool unregisterClose = closeRegistered_;
  closeRegistered_ = false;
  virConnectPtr c = conn_;
  conn_ = nullptr;
  return RunStatus(
      info.Env(),
      [c, ids, unregisterClose] {
        for (int id : ids) virConnectDomainEventDeregisterAny(c, id);
        if (unregisterClose) UnregisterClose(c);
        return virConnectClose(c) < 0 ? -1 : 0;
      },
      "virConnectClose failed");
}

Napi::Value Connection::IsAlive(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), conn_ && virConnectIsAlive(conn_) == 1);
}

Napi::Value Connection::SetKeepAlive(const Napi::CallbackInfo& info) {
  if (!Usable(info.Env())) return info.Env().Undefined();
  int interval = info[0].As<Napi::Number>().Int32Value();
  unsigned int count = info[1].As<Napi::Number>().Uint32Value();
  ConnRef ref(conn_);
  // Returns 1 when the driver has no keepalive (local test driver): not an error.
  return RunStatus(info.Env(), [ref, interval, count] { return virConnectSetKeepAlive(ref.c, interval, count) < 0 ? -1 : 0; }, "virConnectSetKeepAlive failed");
}

Napi::Value Connection::NodeInfo(const Napi::CallbackInfo& info) {
  if (!Usable(info.Env())) return info.Env().Undefined();
  ConnRef ref(conn_);
  return PromiseWorker<virNodeInfo>::Start(
      info.Env(),
      [ref](std::optional<LibvirtError>& err) {
        virNodeInfo n{};
        if (virNodeGetInfo(ref.c, &n) < 0) err = LibvirtError::Last("virNodeGetInfo failed");
        return n;
      },
      [](Napi::Env env, virNodeInfo& n) {
        Napi::Object o = Napi::Object::New(env);
        o.Set("model", std::string(n.model));
        o.Set("memoryKiB", static_cast<double>(n.memory));
        o.Set("cpus", n.cpus);
        o.Set("mhz", n.mhz);
        o.Set("nodes", n.nodes);
        o.Set("sockets", n.sockets);
        o.Set("cores", n.cores);
        o.Set("threads", n.threads);
        return o;
      });
}

Napi::Value Connection::Versions(const Napi::CallbackInfo& info) {
  if (!Usable(info.Env())) return info.Env().Undefined();
  ConnRef ref(conn_);
  struct V {
    unsigned long lib = 0, hv = 0;
    std::string type;
  };
  return PromiseWorker<V>::Start(
      info.Env(),
      [ref](std::optional<LibvirtError>& err) {
        V v;
        const char* type = virConnectGetType(ref.c);
        if (!type || virConnectGetLibVersion(ref.c, &v.lib) < 0 || virConnectGetVersion(ref.c, &v.hv) < 0) {
          err = LibvirtError::Last("reading libvirt versions failed");
          return v;
        }
        v.type = type;
        return v;
      },
      [](Napi::Env env, V& v) {
        Napi::Object o = Napi::Object::New(env);
        o.Set("libvirt", VersionString(v.lib));
        o.Set("hypervisor", VersionString(v.hv));
        o.Set("type", v.type);
        return o;
      });
}

// What the hypervisor offers for a domain type on this host: libvirt answers from its
// capability cache, which knows whether its QEMU user can use /dev/kvm.
Napi::Value Connection::DomainCapabilities(const Napi::CallbackInfo& info) {
  if (!Usable(info.Env())) return info.Env().Undefined();
  std::string virttype = info[0].As<Napi::String>().Utf8Value();
  ConnRef ref(conn_);
  return PromiseWorker<std::string>::Start(
      info.Env(),
      [ref, virttype](std::optional<LibvirtError>& err) {
        std::string out;
        char* xml = virConnectGetDomainCapabilities(ref.c, nullptr, nullptr, nullptr, virttype.c_str(), 0);
        if (!xml) {
          err = LibvirtError::Last("virConnectGetDomainCapabilities failed");
          return out;
        }
        out = xml;
        free(xml);
        return out;
      },
      [](Napi::Env env, std::string& xml) -> Napi::Value { return Napi::String::New(env, xml); });
}

Napi::Value Connection::ListAllDomains(const Napi::CallbackInfo& info) {
  if (!Usable(info.Env())) return info.Env().Undefined();
  unsigned int flags = info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().Uint32Value() : 0;
  ConnRef ref(conn_);
  using L = std::vector<virDomainPtr>;
  return PromiseWorker<L>::Start(
      info.Env(),
      [ref, flags](std::optional<LibvirtError>& err) {
        virDomainPtr* doms = nullptr;
        int n = virConnectListAllDomains(ref.c, &doms, flags);
        L out;
        if (n < 0) {
          err = LibvirtError::Last("virConnectListAllDomains failed");
          return out;
        }
        out.assign(doms, doms + n);
        free(doms);
        return out;
      },
      [](Napi::Env env, L& doms) {
        Napi::Array arr = Napi::Array::New(env, doms.size());
        for (size_t i = 0; i < doms.size(); i++) arr.Set(i, Domain::Wrap(env, doms[i]));
        return arr;
      });
}

Napi::Promise Connection::Lookup(Napi::Env env, std::function<virDomainPtr(virConnectPtr)> fn, const char* what) {
  ConnRef ref(conn_);
  return PromiseWorker<virDomainPtr>::Start(
      env,
      [ref, fn, what](std::optional<LibvirtError>& err) {
        virDomainPtr d = fn(ref.c);
        if (!d) err = LibvirtError::Last(what);
        return d;
      },
      [](Napi::Env e, virDomainPtr& d) -> Napi::Value { return Domain::Wrap(e, d); });
}

Napi::Value Connection::LookupByUUID(const Napi::CallbackInfo& info) {
  if (!Usable(info.Env())) return info.Env().Undefined();
  std::string uuid = info[0].As<Napi::String>().Utf8Value();
  return Lookup(info.Env(), [uuid](virConnectPtr c) { return virDomainLookupByUUIDString(c, uuid.c_str()); }, "virDomainLookupByUUIDString failed");
}

Napi::Value Connection::LookupByName(const Napi::CallbackInfo& info) {
  if (!Usable(info.Env())) return info.Env().Undefined();
  std::string name = info[0].As<Napi::String>().Utf8Value();
  return Lookup(info.Env(), [name](virConnectPtr c) { return virDomainLookupByName(c, name.c_str()); }, "virDomainLookupByName failed");
}

Napi::Value Connection::DefineXML(const Napi::CallbackInfo& info) {
  if (!Usable(info.Env())) return info.Env().Undefined();
  std::string xml = info[0].As<Napi::String>().Utf8Value();
  return Lookup(info.Env(), [xml](virConnectPtr c) { return virDomainDefineXML(c, xml.c_str()); }, "virDomainDefineXML failed");
}

Napi::Value Connection::OnLifecycleEvent(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!Usable(env)) return env.Undefined();
  auto tsfn = Napi::ThreadSafeFunction::New(env, info[0].As<Napi::Function>(), "kova-libvirt-lifecycle", 0, 1);
  tsfn.Unref(env);
  ConnRef ref(conn_);
  // Registering is an RPC to the daemon: it runs on the worker. The reference keeps this object
  // alive until the id is recorded (on the JavaScript thread) for Close to deregister.
  auto self = std::make_shared<Napi::ObjectReference>(Napi::Persistent(info.This().As<Napi::Object>()));
  return PromiseWorker<int>::Start(
      env,
      [ref, tsfn](std::optional<LibvirtError>& err) {
        int id = RegisterLifecycle(ref.c, tsfn);
        if (id < 0) err = LibvirtError::Last("virConnectDomainEventRegisterAny failed");
        return id;
      },
      [this, self](Napi::Env e, int& id) -> Napi::Value {
        // Closed meanwhile: the daemon drops the callback with the connection.
        if (conn_) eventIds_.push_back(id);
        return Napi::Number::New(e, id);
      });
}

Napi::Value Connection::OnClose(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!Usable(env)) return env.Undefined();
  auto tsfn = Napi::ThreadSafeFunction::New(env, info[0].As<Napi::Function>(), "kova-libvirt-close", 0, 1);
  tsfn.Unref(env);
  if (RegisterClose(conn_, tsfn) < 0) {
    LibvirtError::Last("virConnectRegisterCloseCallback failed").ToJs(env).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  closeRegistered_ = true;
  return env.Undefined();
}
