#include "base/iso_time.h"

#include <cstdio>
#include <cstring>

namespace kappa {

size_t IsoTime(int64_t epoch_ms, char* buf) {
  // Civil date from days since the epoch (H. Hinnant's algorithm): no
  // gmtime_r, no snprintf in the per-record path.
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
  const int64_t year = yoe + era * 400 + (month <= 2);
  if (year < 0 || year > 9999) {  // outside what four digits show: print plainly
    return static_cast<size_t>(std::snprintf(buf, 32, "%lld", static_cast<long long>(epoch_ms)));
  }
  auto put = [&](size_t at, int64_t v, int width) {
    for (int i = width - 1; i >= 0; --i, v /= 10) buf[at + i] = static_cast<char>('0' + v % 10);
  };
  std::memcpy(buf, "0000-00-00T00:00:00.000Z", 25);
  put(0, year, 4);
  put(5, month, 2);
  put(8, day, 2);
  put(11, sod / 3600, 2);
  put(14, sod / 60 % 60, 2);
  put(17, sod % 60, 2);
  put(20, ms, 3);
  return 24;
}

}  // namespace kappa
