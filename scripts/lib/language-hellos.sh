# Sourced by the benchmark scripts (from the repository root): builds a Python hello
# (componentize-py from PyPI) and a JavaScript hello (componentize-js from npm) into
# .cache/languages/ once, and sets python_wasm, js_wasm and p3_wasm (guests/hello-p3).
langs=.cache/languages
mkdir -p "$langs"
python_wasm=$langs/python-hello.wasm
js_wasm=$langs/js-hello.wasm
p3_wasm=guests/target/wasm32-wasip2/release/hello_p3.wasm

if [[ ! -f $python_wasm ]]; then
  echo "bench: building the Python hello with componentize-py (PyPI)"
  python3 -m venv "$langs/py-venv"
  "$langs/py-venv/bin/pip" install -q componentize-py
  mkdir -p "$langs/python"
  cat >"$langs/python/app.py" <<'EOF'
from wit_world import exports
from wit_world.imports.types import (
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
)
from componentize_py_types import Ok


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request: IncomingRequest, response_out: ResponseOutparam) -> None:
        path = request.path_with_query() or "/"
        response = OutgoingResponse(Fields.from_list([("content-type", b"text/plain")]))
        body = response.body()
        ResponseOutparam.set(response_out, Ok(response))
        stream = body.write()
        stream.blocking_write_and_flush(f"hello from python: {path}\n".encode())
        stream.__exit__(None, None, None)
        OutgoingBody.finish(body, None)
EOF
  "$langs/py-venv/bin/componentize-py" -d wit -w wasi:http/proxy@0.2.12 \
    componentize -p "$langs/python" app -o "$python_wasm"
fi

if [[ ! -f $js_wasm ]]; then
  echo "bench: building the JavaScript hello with componentize-js (npm)"
  mkdir -p "$langs/js"
  (cd "$langs/js" && npm init -y >/dev/null && npm install -s @bytecodealliance/componentize-js >/dev/null)
  # componentize-js's API directly: `jco componentize` 1.35 cannot read a WIT folder here
  # (its WASI-hosted wasm-tools fails with "failed to get path metadata").
  cat >"$langs/js/build.mjs" <<'EOF'
import { componentize } from "@bytecodealliance/componentize-js";
import { writeFile } from "node:fs/promises";
import { resolve } from "node:path";
const [source, wit, world, out] = process.argv.slice(2);
const { component } = await componentize({
  sourcePath: resolve(source),
  witPath: resolve(wit),
  worldName: world,
});
await writeFile(out, component);
EOF
  cat >"$langs/js/app.js" <<'EOF'
import { ResponseOutparam, OutgoingResponse, OutgoingBody, Fields } from "wasi:http/types@0.2.12";

export const incomingHandler = {
  handle(request, responseOut) {
    const path = request.pathWithQuery() || "/";
    const response = new OutgoingResponse(new Fields());
    const body = response.body();
    ResponseOutparam.set(responseOut, { tag: "ok", val: response });
    const stream = body.write();
    stream.blockingWriteAndFlush(new TextEncoder().encode(`hello from js: ${path}\n`));
    stream[Symbol.dispose]();
    OutgoingBody.finish(body, undefined);
  },
};
EOF
  (cd "$langs/js" && node build.mjs app.js "$OLDPWD/wit" wasi:http/proxy@0.2.12 "$OLDPWD/$js_wasm")
fi
