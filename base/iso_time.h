// Epoch milliseconds as ISO-8601 UTC text, without gmtime_r or snprintf on
// the per-record path (JSON records, PostgreSQL timestamptz columns).
#pragma once

#include <cstddef>
#include <cstdint>

namespace kappa {

// ISO-8601 UTC with milliseconds ("2026-01-01T00:00:00.123Z") into buf (at
// least 32 bytes); returns its length. Years outside 0..9999 come out as the
// plain epoch ms.
size_t IsoTime(int64_t epoch_ms, char* buf);

}  // namespace kappa
