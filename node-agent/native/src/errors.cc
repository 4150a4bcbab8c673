#include "errors.h"

LibvirtError LibvirtError::Last(const char* fallback) {
  LibvirtError e;
  virErrorPtr err = virGetLastError();
  if (err) {
    e.code = err->code;
    e.domain = err->domain;
    e.message = err->message ? err->message : fallback;
  } else {
    e.code = VIR_ERR_INTERNAL_ERROR;
    e.message = fallback;
  }
  virResetLastError();
  return e;
}

Napi::Error LibvirtError::ToJs(Napi::Env env) const {
  Napi::Error err = Napi::Error::New(env, message);
  err.Set("code", Napi::Number::New(env, code));
  err.Set("domain", Napi::Number::New(env, domain));
  err.Set("name", Napi::String::New(env, "LibvirtError"));
  return err;
}
