#include "base/iso_time.h"

#include <cstdio>
#include <cstring>

namespace kappa {
namespace {

struct Civil {
  int64_t year, month, day, sod, ms;
};

// Civil date from days since the epoch (H. Hinnant's algorithm): no
// gmtime_r, no snprintf in the per-record path.
Civil ToCivil(int64_t epoch_ms) {
  int64_t secs = epoch_ms / 1000, ms = epoch_ms % 1000;
  if (ms < 0) ms += 1000, --secs;
  int64_t days = secs / 86400, sod = secs % 86400;
  if (sod < 0) sod += 86400, --days;
  const int64_t z = days + 719468;
  const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const int64_t doe = z - era * 146097;
  const int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const int64_t mp = (5 * doy + 2) / 153;
  const int64_t day = doy - (153 * mp + 2) / 5 + 1;
  const int64_t month = mp < 10 ? mp + 3 : mp - 9;
  return {yoe + era * 400 + (month <= 2), month, day, sod, ms};
}

// "YYYY-MM-DDTHH:MM:SS.mmmZ" with the year given (0..9999), 24 bytes.
size_t PutIso(const Civil& c, int64_t year, char* buf) {
  auto put = [&](size_t at, int64_t v, int width) {
    for (int i = width - 1; i >= 0; --i, v /= 10) buf[at + i] = static_cast<char>('0' + v % 10);
  };
  std::memcpy(buf, "0000-00-00T00:00:00.000Z", 25);
  put(0, year, 4);
  put(5, c.month, 2);
  put(8, c.day, 2);
  put(11, c.sod / 3600, 2);
  put(14, c.sod / 60 % 60, 2);
  put(17, c.sod % 60, 2);
  put(20, c.ms, 3);
  return 24;
}

}  // namespace

size_t IsoTime(int64_t epoch_ms, char* buf) {
  const Civil c = ToCivil(epoch_ms);
  if (c.year < 0 || c.year > 9999) {  // outside what four digits show: print plainly
    return static_cast<size_t>(std::snprintf(buf, 32, "%lld", static_cast<long long>(epoch_ms)));
  }
  return PutIso(c, c.year, buf);
}

size_t PostgresTime(int64_t epoch_ms, char* buf) {
  const Civil c = ToCivil(epoch_ms);
  if (c.year >= 1 && c.year <= 9999) return PutIso(c, c.year, buf);
  if (c.year > 9999) {
    // PostgreSQL reads a year of more than four digits (up to 294276).
    if (c.year > 9999999) return static_cast<size_t>(std::snprintf(buf, 32, "%lld", static_cast<long long>(epoch_ms)));
    char iso[32];
    PutIso(c, 0, iso);
    const size_t n = static_cast<size_t>(std::snprintf(buf, 32, "%lld", static_cast<long long>(c.year)));
    std::memcpy(buf + n, iso + 4, 20);
    return n + 20;
  }
  // No year 0 in the calendar PostgreSQL writes: year 0 is 1 BC, -1 is 2 BC.
  const int64_t bc = 1 - c.year;
  if (bc > 9999) return static_cast<size_t>(std::snprintf(buf, 32, "%lld", static_cast<long long>(epoch_ms)));
  const size_t n = PutIso(c, bc, buf);
  std::memcpy(buf + n, " BC", 3);
  return n + 3;
}

}  // namespace kappa
