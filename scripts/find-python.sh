#!/usr/bin/env bash
# Prints the interpreter to build the virtualenv with: the Lambda runtime's Python (from template.yaml) when this
# machine has it (on PATH or through pyenv), else python3. Tests then run on the same Python as the Lambda.
set -euo pipefail
version=$(sed -n 's/^ *Runtime: *python\([0-9.]*\).*/\1/p' "$(dirname "$0")/../template.yaml" | head -n 1)
if [ -n "$version" ]; then
  if command -v "python$version" >/dev/null 2>&1 && "python$version" -c '' 2>/dev/null; then
    command -v "python$version"; exit 0
  fi
  if command -v pyenv >/dev/null 2>&1; then
    for candidate in $(pyenv versions --bare 2>/dev/null | grep -E "^${version//./\\.}(\.[0-9]+)?$" | sort -V -r); do
      prefix=$(pyenv prefix "$candidate" 2>/dev/null) && [ -x "$prefix/bin/python" ] && { echo "$prefix/bin/python"; exit 0; }
    done
  fi
  echo "note: python$version (the Lambda runtime) not found; using python3" >&2
fi
command -v python3
