// Renders kappa's FlatBuffers payloads (Transaction, DlqRecord,
// WindowAggregate, NexmarkEvent, Row, recognised by file identifier) as one line of JSON, for
// `kappa consume --print` and for people reading topics. Verifies first:
// a payload that fails verification is shown as {"undecodable": N bytes}.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace kappa {

std::string FormatRecordJson(const uint8_t* data, size_t size);
std::string JsonEscape(const std::string& text);

}  // namespace kappa
