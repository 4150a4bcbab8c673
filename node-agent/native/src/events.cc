#include "events.h"
#include <libvirt/virterror.h>
#include <string>
#include <thread>

namespace {
struct LifecycleEvent {
  std::string uuid;
  std::string name;
  int event;
  int detail;
};

void ReleaseTsfn(void* opaque) {
  auto* tsfn = static_cast<Napi::ThreadSafeFunction*>(opaque);
  tsfn->Release();
  delete tsfn;
}

int OnLifecycle(virConnectPtr, virDomainPtr dom, int event, int detail, void* opaque) {
  auto* tsfn = static_cast<Napi::ThreadSafeFunction*>(opaque);
  char uuid[VIR_UUID_STRING_BUFLEN] = {0};
  virDomainGetUUIDString(dom, uuid);
  const char* name = virDomainGetName(dom);
  auto* data = new LifecycleEvent{uuid, name ? name : "", event, detail};
  napi_status st = tsfn->NonBlockingCall(data, [](Napi::Env env, Napi::Function cb, LifecycleEvent* d) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("uuid", d->uuid);
    o.Set("name", d->name);
    o.Set("event", d->event);
    o.Set("detail", d->detail);
    delete d;
    cb.Call({o});
  });
  if (st != napi_ok) delete data;
  return 0;
}

void OnClose(virConnectPtr, int reason, void* opaque) {
  auto* tsfn = static_cast<Napi::ThreadSafeFunction*>(opaque);
  tsfn->NonBlockingCall(new int(reason), [](Napi::Env env, Napi::Function cb, int* r) {
    int reason = *r;
    delete r;
    cb.Call({Napi::Number::New(env, reason)});
  });
}
}  // namespace

bool StartEventLoop(std::string* error) {
  if (virEventRegisterDefaultImpl() < 0) {
    virErrorPtr e = virGetLastError();
    *error = e && e->message ? e->message : "virEventRegisterDefaultImpl failed";
    return false;
  }
  std::thread([] {
    for (;;) virEventRunDefaultImpl();
  }).detach();
  return true;
}

int RegisterLifecycle(virConnectPtr conn, Napi::ThreadSafeFunction tsfn) {
  auto* held = new Napi::ThreadSafeFunction(tsfn);
  int id = virConnectDomainEventRegisterAny(conn, nullptr, VIR_DOMAIN_EVENT_ID_LIFECYCLE,
                                            VIR_DOMAIN_EVENT_CALLBACK(OnLifecycle), held, ReleaseTsfn);
  if (id < 0) {
    held->Release();
    delete held;
  }
  return id;
}

int RegisterClose(virConnectPtr conn, Napi::ThreadSafeFunction tsfn) {
  auto* held = new Napi::ThreadSafeFunction(tsfn);
  int rc = virConnectRegisterCloseCallback(conn, OnClose, held, ReleaseTsfn);
  if (rc < 0) {
    held->Release();
    delete held;
  }
  return rc;
}

void UnregisterClose(virConnectPtr conn) { virConnectUnregisterCloseCallback(conn, OnClose); }
