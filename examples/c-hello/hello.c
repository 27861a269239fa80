// Example guest in C: the greeter of ../hello/wit (world `hello`), the same exports as the Rust
// hello. Bindings come from `wit-bindgen c`; build.sh compiles with `zig cc` and makes the
// component with `wasm-tools component new`. It imports nothing: no WASI, no host capability.

#include <stdlib.h>
#include <string.h>

#include "hello.h"

// Appends `len` bytes of `text` at `*at` and moves `*at` past them.
static void append(char **at, const char *text, size_t len) {
  memcpy(*at, text, len);
  *at += len;
}

bool exports_hello_greet(hello_person_t *who, hello_string_t *ret, hello_string_t *err) {
  bool ok = who->name.len > 0;
  if (!ok) {
    hello_string_dup(err, "name must not be empty");
  } else {
    hello_string_t *name = who->nickname.is_some ? &who->nickname.val : &who->name;
    char age[4];
    size_t age_len = 0;
    for (unsigned n = who->age, div = 100; div > 0; div /= 10) {
      if (n / div > 0 || age_len > 0 || div == 1) age[age_len++] = (char)('0' + n / div % 10);
    }
    static const char hello[] = "Hello, ", you_are[] = "! You are ";
    ret->len = sizeof hello - 1 + name->len + sizeof you_are - 1 + age_len + 1;
    ret->ptr = malloc(ret->len);
    char *at = (char *)ret->ptr;
    append(&at, hello, sizeof hello - 1);
    append(&at, (const char *)name->ptr, name->len);
    append(&at, you_are, sizeof you_are - 1);
    append(&at, age, age_len);
    append(&at, ".", 1);
  }
  hello_person_free(who);
  return ok;
}

void exports_hello_noop(void) {}
