// The headers nearly every test includes, precompiled once and reused by
// every test executable (tests/CMakeLists.txt): parsing GoogleTest and the
// standard library was half of each test's compile time, and CI builds the
// suite twice. External headers only: kappa's own headers change with the
// code and stay ordinary includes.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
