#!/usr/bin/env bash
# Checks that includes only go downward through the layers:
#   base < kafka < postgres < formats < archive < state < operators < engine < replay < workload < cli
# A file in one of these folders may include its own folder, any folder to
# its left, and the generated schemas/ headers; nothing to its right.
# Operators read every format through the record view (InputRecord::fields,
# formats/record_view.h), so operators/ may not include the input schemas
# (schemas/transaction_generated.h, schemas/nexmark_generated.h): their
# decoders live in formats/. Output schemas (rows, window aggregates) are fine.
# Prints each offending include and exits 1; silent and 0 when clean.
set -euo pipefail
cd "$(dirname "$0")/.."
layers=(base kafka postgres formats archive state operators engine replay workload cli)
rank() { local i; for i in "${!layers[@]}"; do [ "${layers[$i]}" = "$1" ] && { echo "$i"; return; }; done; echo -1; }
bad=0
for dir in "${layers[@]}"; do
  mine=$(rank "$dir")
  while IFS=: read -r file line text; do
    target=$(sed -E 's/^#include "([a-z_]+)\/.*/\1/' <<<"$text")
    theirs=$(rank "$target")
    if [ "$theirs" -gt "$mine" ]; then
      echo "$file:$line: $dir/ includes $target/ (a higher layer): $text"
      bad=1
    fi
  done < <(grep -rnE '^#include "[a-z_]+/' "$dir" --include='*.h' --include='*.cc' || true)
done
while IFS=: read -r file line text; do
  echo "$file:$line: operators/ includes an input format's schema (decode it in formats/ into the record view): $text"
  bad=1
done < <(grep -rnE '^#include "schemas/(transaction|nexmark)_generated\.h"' operators --include='*.h' --include='*.cc' || true)
exit $bad
