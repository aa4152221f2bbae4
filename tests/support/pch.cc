// Compiles tests/support/pch.h once; the test executables reuse the result.
