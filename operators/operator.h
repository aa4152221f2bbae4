// The operators module's public header: the operator interface
// (operators/operator_interface.h) and the registry of operator kinds with
// their spec structs (operators/operator_registry.h).
#pragma once

#include "operators/operator_interface.h"
#include "operators/operator_registry.h"
