#!/usr/bin/env bash
# Renders the book's Graphviz diagrams (docs/src/**/*.dot) to SVG beside them.
# Needs Graphviz's `dot` (Debian: apt-get install graphviz). Commit the .dot and the .svg together.
set -euo pipefail
cd "$(dirname "$0")/src"
find . -name '*.dot' -print0 | while IFS= read -r -d '' source; do
  dot -Tsvg "$source" -o "${source%.dot}.svg"
  echo "rendered ${source%.dot}.svg"
done
