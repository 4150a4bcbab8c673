// libvirt's default event loop runs on a thread of its own; events and connection-close
// notices reach JavaScript through thread-safe functions.
#pragma once
#include <napi.h>
#include <libvirt/libvirt.h>

// Registers libvirt's default event implementation and starts its thread. Must run before
// any connection is opened, so keepalive and events work on every connection.
bool StartEventLoop(std::string* error);

// Lifecycle events of every domain on `conn` call `callback({uuid, name, event, detail})`.
// Returns the libvirt callback id, or -1 (with libvirt's error set on this thread).
int RegisterLifecycle(virConnectPtr conn, Napi::ThreadSafeFunction tsfn);

// `callback(reason)` runs when the connection closes (daemon gone, keepalive timeout, ...).
int RegisterClose(virConnectPtr conn, Napi::ThreadSafeFunction tsfn);
void UnregisterClose(virConnectPtr conn);
