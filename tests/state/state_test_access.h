// Test-only access to what the state backend alone may call: a registry's
// tables and a KeyedState's change capture (state/keyed_state.h keeps them
// private; this struct is its declared friend). For tests that play the
// backend's part without RocksDB, and for checking dirty sets.
#pragma once

#include <memory>
#include <string_view>
#include <vector>

#include "state/keyed_state.h"

namespace kappa {

struct StateRegistryTestAccess {
  static const std::vector<std::unique_ptr<StateTable>>& Tables(const StateRegistry& registry) {
    return registry.tables();
  }
  template <typename V>
  static size_t DirtyCount(const KeyedState<V>& state) {
    return state.DirtyCount();
  }
  template <typename V, typename F>
  static void ForEachErased(const KeyedState<V>& state, F&& fn) {
    state.ForEachErased(fn);
  }
  template <typename V>
  static void ClearDirty(KeyedState<V>& state) {
    state.ClearDirty();
  }
  template <typename V>
  static void TakeChanges(KeyedState<V>& state, TableChanges* out) {
    state.TakeChanges(out);
  }
  template <typename V>
  static Status Load(KeyedState<V>& state, std::string_view key, std::string_view value) {
    return state.Load(key, value);
  }
};

}  // namespace kappa
