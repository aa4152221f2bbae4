// This machine's host name, for names and messages (a scaled-out
// instance's default name, a lease's holder).
#pragma once

#include <unistd.h>

#include <string>

namespace kappa {

// "" if the system will not say.
inline std::string HostName() {
  char host[256] = {};
  if (gethostname(host, sizeof(host) - 1) != 0) return "";
  return host;
}

}  // namespace kappa
