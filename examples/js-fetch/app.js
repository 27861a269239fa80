// Example guest in JavaScript: an outbound GET through ComponentizeJS's bindings of
// `wasi:http/outgoing-handler`, exporting the world `example:fetch/fetcher` (../fetch/wit). The host
// refuses any URL that the function's `grants.http` does not list. Built into a component by
// ComponentizeJS (StarlingMonkey; see host.toml).
// WIT names are camelCase here; a function or method returning a `result` returns its ok value or
// throws an Error whose `payload` is the error value; a variant is `{ tag, val }` with the WIT case
// name as its tag ("HTTP-request-denied"). StarlingMonkey's `fetch` uses the same import, but its
// errors are a bare "NetworkError" TypeError: the raw bindings tell which error-code it was.

import { handle } from "wasi:http/outgoing-handler@0.2.12";
import { Fields, OutgoingRequest, httpErrorCode } from "wasi:http/types@0.2.12";

/** Thrown with a `wasi:http` error-code, a variant `{ tag, val }`. */
class HttpError extends Error {
  constructor(code) {
    super(code.tag);
    this.code = code;
  }
}

/** A GET of `url` (the method a new request has); an unusable URL is `HTTP-request-URI-invalid`. */
function request(url) {
  const request = new OutgoingRequest(new Fields());
  try {
    const { protocol, host, pathname, search } = new URL(url);
    const scheme = protocol.slice(0, -1);
    const known = scheme === "http" || scheme === "https";
    request.setScheme(known ? { tag: scheme.toUpperCase() } : { tag: "other", val: scheme });
    request.setAuthority(host);
    request.setPathWithQuery(pathname + search);
  } catch {
    throw new HttpError({ tag: "HTTP-request-URI-invalid" });
  }
  return request;
}

/** Calls `body`, turning a failing import's `error-code` payload into an `HttpError`. */
function httpErrors(body) {
  try {
    return body();
  } catch (error) {
    throw error.payload ? new HttpError(error.payload) : error;
  }
}

/** GETs `url`, blocking until the whole body has arrived; a failure throws an `HttpError` or a string. */
function get(url) {
  const future = httpErrors(() => handle(request(url)));
  future.subscribe().block();
  // Ready now: `get` answers ok(ok(response)) or ok(err(error-code)) (an outer error would mean a
  // response taken already).
  const outcome = future.get().val;
  if (outcome.tag === "err") throw new HttpError(outcome.val);
  const response = outcome.val;
  const stream = response.consume().stream();
  const chunks = [];
  for (;;) {
    try {
      chunks.push(stream.blockingRead(64n * 1024n));
    } catch (error) {
      const failure = error.payload;
      if (failure?.tag === "closed") break;
      if (failure?.tag !== "last-operation-failed") throw error;
      // The body broke off: an error-code when there is one, else the host's words.
      const code = httpErrorCode(failure.val);
      throw code ? new HttpError(code) : failure.val.toDebugString();
    }
  }
  const body = new Uint8Array(chunks.reduce((n, chunk) => n + chunk.length, 0));
  chunks.reduce((at, chunk) => (body.set(chunk, at), at + chunk.length), 0);
  return { status: response.status(), body };
}

export function fetchText(url) {
  try {
    const { status, body } = get(url);
    return `${status} ${new TextDecoder().decode(body)}`;
  } catch (error) {
    // A `result` export must throw its error value: the string.
    throw error instanceof HttpError ? error.code.tag : String(error);
  }
}
