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

// The same for PostgreSQL's timestamptz input, which holds 4713 BC to
// 294276 AD: years past 9999 with more digits ("10000-01-01T00:00:00.000Z"),
// years before 1 as BC ("0001-12-31T23:59:59.999Z BC" is the millisecond
// before year 1). Beyond that (years of eight digits or more, before 9999
// BC) the plain epoch ms, which the database refuses.
size_t PostgresTime(int64_t epoch_ms, char* buf);

}  // namespace kappa
