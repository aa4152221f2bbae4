// Small files replaced whole: the state's epoch marker, the archive's CHAIN
// and PARTITIONS. One implementation, so each is as careful as the others.
#pragma once

#include <string>

#include "base/status.h"

namespace kappa {

// Writes `text` to dir/name atomically and durably: a temporary file
// (removed if anything fails), fsync, rename over the old one, fsync of the
// directory. Errors name the file and errno's text.
Status WriteFileAtomically(const std::string& dir, const std::string& name, const std::string& text);

}  // namespace kappa
