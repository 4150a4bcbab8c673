// libvirt errors carried from worker threads to JavaScript as Error objects with the code,
// domain and message libvirt reported, so callers branch on codes, never on message text.
#pragma once
#include <napi.h>
#include <libvirt/virterror.h>
#include <string>

struct LibvirtError {
  int code = VIR_ERR_OK;
  int domain = VIR_FROM_NONE;
  std::string message;

  // Reads libvirt's error for the calling thread (it is thread-local); call on the failing thread.
  static LibvirtError Last(const char* fallback);
  Napi::Error ToJs(Napi::Env env) const;
};
