// Example guest in JavaScript: the hello greeter, a counter, a config value, a bucket write and
// grayscale, exporting the world `example:hello/hello-plus` (../hello/wit/world.wit), which
// includes every host import. Built into a component by componentize-qjs (see host.toml).
// WIT names are camelCase here; a `result` export returns its ok value or throws its error, and a
// failing import throws an Error whose `payload` is the host's error variant, `{ tag, val }`.

import store from "wasi:keyvalue/store@0.2.0-draft2";
import atomics from "wasi:keyvalue/atomics@0.2.0-draft2";
import config from "wasi:config/store@0.2.0-draft-2024-09-27";
import buckets from "host:api/buckets@0.1.0";

// OpenCV's COLOR_BGR2GRAY weights in 14-bit fixed point: round(0.299, 0.587, 0.114 * 2^14).
const R = 4899, G = 9617, B = 1868;

/** Runs `body`, turning a host error variant into the readable message our exports throw. */
function hostErrors(body) {
  try {
    return body();
  } catch (error) {
    const variant = error?.payload;
    if (typeof variant?.tag !== "string") throw String(error);
    const words = variant.tag.replaceAll("-", " ");
    throw variant.val === undefined ? words : `${words}: ${variant.val}`;
  }
}

/** The UTF-8 bytes of `text` (QuickJS has no TextEncoder). */
function utf8(text) {
  const escaped = encodeURIComponent(text);
  const bytes = [];
  for (let i = 0; i < escaped.length; i++) {
    if (escaped[i] === "%") {
      bytes.push(parseInt(escaped.slice(i + 1, i + 3), 16));
      i += 2;
    } else {
      bytes.push(escaped.charCodeAt(i));
    }
  }
  return new Uint8Array(bytes);
}

export function greet(who) {
  if (who.name === "") throw "name must not be empty";
  const name = who.nickname ?? who.name;
  return `Hello, ${name}! You are ${who.age}.`;
}

export function noop() {}

export function count(key, by) {
  return hostErrors(() => atomics.increment(store.open("default"), key, by));
}

export function greeting() {
  const greeting = hostErrors(() => config.get("greeting"));
  if (greeting === null) throw 'config key "greeting" is not set';
  return greeting;
}

export function saveNote(name, text) {
  return hostErrors(() => {
    const notes = buckets.open("notes");
    notes.write(name, utf8(text));
    return notes.stat(name).size;
  });
}

export function gray(rgb) {
  if (rgb.length % 3 !== 0) throw `rgb has ${rgb.length} bytes: not whole pixels of 3 bytes (R, G, B)`;
  const out = new Uint8Array(rgb.length / 3);
  for (let i = 0; i < out.length; i++) {
    out[i] = (rgb[3 * i] * R + rgb[3 * i + 1] * G + rgb[3 * i + 2] * B + (1 << 13)) >> 14;
  }
  return out;
}
