#include "domain.h"
#include "async.h"
#include <string>

Napi::FunctionReference* Domain::constructor = nullptr;

namespace {
// A reference held for the duration of one call on a worker thread.
struct DomainRef {
  virDomainPtr d;
  explicit DomainRef(virDomainPtr dom) : d(dom) { virDomainRef(d); }
  DomainRef(const DomainRef& o) : d(o.d) { virDomainRef(d); }
  ~DomainRef() { virDomainFree(d); }
};

unsigned int FlagsArg(const Napi::CallbackInfo& info, size_t i) {
  return info.Length() > i && info[i].IsNumber() ? info[i].As<Napi::Number>().Uint32Value() : 0;
}
}  // namespace

void Domain::Init(Napi::Env env, Napi::Object exports) {
  Napi::Function fn = DefineClass(env, "Domain", {
      InstanceAccessor<&Domain::Name>("name"),
      InstanceAccessor<&Domain::Uuid>("uuid"),
      InstanceMethod<&Domain::Create>("create"),
      InstanceMethod<&Domain::Shutdown>("shutdown"),
      InstanceMethod<&Domain::Destroy>("destroy"),
      InstanceMethod<&Domain::Reboot>("reboot"),
      InstanceMethod<&Domain::Suspend>("suspend"),
      InstanceMethod<&Domain::Resume>("resume"),
      InstanceMethod<&Domain::Undefine>("undefine"),
      InstanceMethod<&Domain::GetState>("getState"),
      InstanceMethod<&Domain::GetInfo>("getInfo"),
      InstanceMethod<&Domain::GetXMLDesc>("getXMLDesc"),
      InstanceMethod<&Domain::GetId>("getId"),
  });
  constructor = new Napi::FunctionReference(Napi::Persistent(fn));
  exports.Set("Domain", fn);
}

Napi::Object Domain::Wrap(Napi::Env env, virDomainPtr dom) {
  Napi::Object obj = constructor->New({Napi::External<virDomain>::New(env, dom)});
  return obj;
}

Domain::Domain(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Domain>(info) {
  if (info.Length() < 1 || !info[0].IsExternal()) {
    Napi::TypeError::New(info.Env(), "Domain objects come from a Connection; they cannot be constructed").ThrowAsJavaScriptException();
    return;
  }
  dom_ = info[0].As<Napi::External<virDomain>>().Data();
}

Domain::~Domain() {
  if (dom_) virDomainFree(dom_);
}

Napi::Value Domain::Name(const Napi::CallbackInfo& info) {
  const char* name = virDomainGetName(dom_);
  return Napi::String::New(info.Env(), name ? name : "");
}

Napi::Value Domain::Uuid(const Napi::CallbackInfo& info) {
  char uuid[VIR_UUID_STRING_BUFLEN];
  if (virDomainGetUUIDString(dom_, uuid) < 0) return info.Env().Null();
  return Napi::String::New(info.Env(), uuid);
}

Napi::Promise Domain::Status(Napi::Env env, int (*call)(virDomainPtr, unsigned int), unsigned int flags, const char* what) {
  DomainRef ref(dom_);
  return RunStatus(env, [ref, call, flags]() { return call(ref.d, flags); }, what);
}

Napi::Value Domain::Create(const Napi::CallbackInfo& info) {
  return Status(info.Env(), virDomainCreateWithFlags, FlagsArg(info, 0), "virDomainCreate failed");
}
Napi::Value Domain::Shutdown(const Napi::CallbackInfo& info) {
  return Status(info.Env(), virDomainShutdownFlags, FlagsArg(info, 0), "virDomainShutdown failed");
}
Napi::Value Domain::Destroy(const Napi::CallbackInfo& info) {
  return Status(info.Env(), virDomainDestroyFlags, FlagsArg(info, 0), "virDomainDestroy failed");
}
Napi::Value Domain::Reboot(const Napi::CallbackInfo& info) {
  return Status(info.Env(), virDomainReboot, FlagsArg(info, 0), "virDomainReboot failed");
}
Napi::Value Domain::Undefine(const Napi::CallbackInfo& info) {
  return Status(info.Env(), virDomainUndefineFlags, FlagsArg(info, 0), "virDomainUndefine failed");
}
Napi::Value Domain::Suspend(const Napi::CallbackInfo& info) {
  DomainRef ref(dom_);
  return RunStatus(info.Env(), [ref]() { return virDomainSuspend(ref.d); }, "virDomainSuspend failed");
}
Napi::Value Domain::Resume(const Napi::CallbackInfo& info) {
  DomainRef ref(dom_);
  return RunStatus(info.Env(), [ref]() { return virDomainResume(ref.d); }, "virDomainResume failed");
}

Napi::Value Domain::GetState(const Napi::CallbackInfo& info) {
  DomainRef ref(dom_);
  using R = std::pair<int, int>;
  return PromiseWorker<R>::Start(
      info.Env(),
      [ref](std::optional<LibvirtError>& err) {
        R r{0, 0};
        if (virDomainGetState(ref.d, &r.first, &r.second, 0) < 0) err = LibvirtError::Last("virDomainGetState failed");
        return r;
      },
      [](Napi::Env env, R& r) {
        Napi::Object o = Napi::Object::New(env);
        o.Set("state", r.first);
        o.Set("reason", r.second);
        return o;
      });
}

Napi::Value Domain::GetInfo(const Napi::CallbackInfo& info) {
  DomainRef ref(dom_);
  return PromiseWorker<virDomainInfo>::Start(
      info.Env(),
      [ref](std::optional<LibvirtError>& err) {
        virDomainInfo i{};
        if (virDomainGetInfo(ref.d, &i) < 0) err = LibvirtError::Last("virDomainGetInfo failed");
        return i;
      },
      [](Napi::Env env, virDomainInfo& i) {
        Napi::Object o = Napi::Object::New(env);
        o.Set("state", static_cast<double>(i.state));
        o.Set("maxMemoryKiB", static_cast<double>(i.maxMem));
        o.Set("memoryKiB", static_cast<double>(i.memory));
        o.Set("vcpus", static_cast<double>(i.nrVirtCpu));
        o.Set("cpuTimeNs", static_cast<double>(i.cpuTime));
        return o;
      });
}

Napi::Value Domain::GetXMLDesc(const Napi::CallbackInfo& info) {
  DomainRef ref(dom_);
  unsigned int flags = FlagsArg(info, 0);
  return PromiseWorker<std::string>::Start(
      info.Env(),
      [ref, flags](std::optional<LibvirtError>& err) {
        char* xml = virDomainGetXMLDesc(ref.d, flags);
        if (!xml) {
          err = LibvirtError::Last("virDomainGetXMLDesc failed");
          return std::string();
        }
        std::string s(xml);
        free(xml);
        return s;
      },
      [](Napi::Env env, std::string& s) { return Napi::String::New(env, s); });
}

Napi::Value Domain::GetId(const Napi::CallbackInfo& info) {
  unsigned int id = virDomainGetID(dom_);
  return id == static_cast<unsigned int>(-1) ? Napi::Number::New(info.Env(), -1) : Napi::Number::New(info.Env(), id);
}
