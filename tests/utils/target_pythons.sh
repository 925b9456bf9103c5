#!/usr/bin/env bash
# Print a directory whose python3.X links point at every real interpreter found for the
# target Python versions ansible-core supports, so ansible-test runs the compile and
# import sanity tests on each. pyenv's shims answer only for its selected versions; the
# interpreters themselves live under $(pyenv root)/versions.
set -euo pipefail
dir=${1:?usage: target_pythons.sh DIR}
rm -rf "$dir" && mkdir -p "$dir"
root=$(pyenv root 2>/dev/null || true)
for version in 3.8 3.9 3.10 3.11 3.12 3.13; do
  for candidate in "$root"/versions/"$version".*/bin/python"$version" /usr/bin/python"$version"; do
    if [ -x "$candidate" ]; then
      ln -s "$candidate" "$dir/python$version"
      break
    fi
  done
done
echo "$dir"
