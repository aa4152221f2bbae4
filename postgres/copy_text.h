// PostgreSQL's COPY text format, written without libpq: a value escaped so
// that backslash, tab, newline and carriage return survive (the row
// encoder's postgres rows and PgClient::CopyIn share it).
#pragma once

#include <string>
#include <string_view>

namespace kappa {

inline void AppendCopyText(std::string& out, std::string_view value) {
  for (char c : value) {
    switch (c) {
      case '\\': out.append("\\\\"); break;
      case '\t': out.append("\\t"); break;
      case '\n': out.append("\\n"); break;
      case '\r': out.append("\\r"); break;
      default: out.push_back(c);
    }
  }
}

}  // namespace kappa
