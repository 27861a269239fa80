#!/bin/sh
# Builds the C greeter into ../../target/guests/c-hello.wasm: bindings from the WIT, a core module
# from zig cc (wasi-libc, reactor: no main), then a component around it. The module imports nothing
# from WASI, so no preview1 adapter is needed.
set -eu
run=../toolchain/run
out=../../target/guests
gen=$out/c-hello-bindings
$run wit-bindgen c ../hello/wit --world hello --out-dir "$gen" >/dev/null
$run zig cc -target wasm32-wasi -mexec-model=reactor -Os -s -I "$gen" \
  hello.c "$gen/hello.c" "$gen/hello_component_type.o" -o "$out/c-hello.core.wasm"
$run wasm-tools component new "$out/c-hello.core.wasm" -o "$out/c-hello.wasm"
