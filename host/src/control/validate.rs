//! Checks a deploy runs before anything is replaced: is this a component at all, does it
//! export the `wasi:http/incoming-handler` this node calls, and does this node provide every
//! interface it imports. Each failure says what was wrong and what to do.

use wasmtime::Engine;
use wasmtime::component::Component;
use wasmtime::component::types::ComponentItem;

use crate::capabilities::{kv, messaging, nn};
use crate::control::repository::Grants;
use crate::error::DeployError;

/// The export of a WASI 0.2 HTTP app (any 0.2.x patch version).
pub const HTTP_HANDLER_EXPORT: &str = "wasi:http/incoming-handler@0.2";
/// The export of a WASI 0.3 HTTP app (`wasi:http/service@0.3.x`).
pub const HTTP_HANDLER_EXPORT_P3: &str = "wasi:http/handler@0.3";

const WASM_MAGIC: &[u8; 4] = b"\0asm";

/// Rejects empty uploads, non-WebAssembly bytes and core modules before compiling anything.
pub fn check_binary_kind(bytes: &[u8]) -> Result<(), DeployError> {
    if bytes.is_empty() {
        return Err(DeployError::InvalidComponent(
            "the upload is empty; send the bytes of a .wasm component".into(),
        ));
    }
    if bytes.len() < 8 || &bytes[..4] != WASM_MAGIC {
        return Err(DeployError::InvalidComponent(
            "the upload is not WebAssembly (no \\0asm header); send a .wasm component built \
             with `cargo build --target wasm32-wasip2` or `cargo component build`"
                .into(),
        ));
    }
    // Bytes 4..8: version and layer. Layer 0 is a core module, layer 1 a component.
    match bytes[6..8] {
        [0, 0] => Err(DeployError::InvalidComponent(
            "this is a core WebAssembly module, not a component; build for wasm32-wasip2 or \
             wrap it with `wasm-tools component new`"
                .into(),
        )),
        [1, 0] => Ok(()),
        _ => Err(DeployError::InvalidComponent(
            "unknown WebAssembly binary layer; send a WASI 0.2 component".into(),
        )),
    }
}

/// Which triggers a component can serve.
#[derive(Debug, Clone, Copy)]
pub struct Handlers {
    /// Exports `wasi:http/incoming-handler@0.2` (the `wasi:http/proxy` world) or
    /// `wasi:http/handler@0.3` (the `wasi:http/service` world).
    pub http: bool,
    /// The HTTP handler is WASI 0.3's.
    pub http_p3: bool,
    /// Exports `wasi:messaging/incoming-handler`.
    pub messaging: bool,
}

/// Requires a handler export: `wasi:http/incoming-handler`, the messaging handler, or both.
pub fn check_exports(engine: &Engine, component: &Component) -> Result<Handlers, DeployError> {
    let ty = component.component_type();
    let exports: Vec<String> = ty
        .exports(engine)
        .map(|(name, _)| name.to_string())
        .collect();
    let http_p3 = exports
        .iter()
        .any(|e| e.starts_with(HTTP_HANDLER_EXPORT_P3));
    let handlers = Handlers {
        http: http_p3 || exports.iter().any(|e| e.starts_with(HTTP_HANDLER_EXPORT)),
        http_p3,
        messaging: exports.iter().any(|e| e == messaging::HANDLER_EXPORT),
    };
    if handlers.http || handlers.messaging {
        return Ok(handlers);
    }
    let found = if exports.is_empty() {
        "nothing".to_string()
    } else {
        exports.join(", ")
    };
    Err(DeployError::WrongWorld(format!(
        "the component does not export wasi:http/incoming-handler@0.2.x, \
         wasi:http/handler@0.3.x or {} (it exports {found}); build it for the wasi:http/proxy \
         world, wasi:http/service@0.3.0 or edge:platform/messaging-app",
        messaging::HANDLER_EXPORT
    )))
}

/// The names of everything the component imports.
pub fn import_names(engine: &Engine, component: &Component) -> Vec<String> {
    component
        .component_type()
        .imports(engine)
        .map(|(name, _)| name.to_string())
        .collect()
}

/// Refuses imports of capabilities the app was not granted, naming the grant to add. Each
/// capability checks its own. (Grants that need parsing, such as outbound origins, are parsed
/// once where the app's capabilities are set up, which refuses malformed ones.)
pub fn check_grants(imports: &[String], grants: &Grants) -> Result<(), DeployError> {
    kv::check_imports(imports, grants.kv)?;
    nn::check_imports(imports, &grants.models)?;
    Ok(())
}

/// Turns an `instantiate_pre` failure into an error naming the first import this node lacks.
pub fn explain_missing_import(
    engine: &Engine,
    component: &Component,
    error: &anyhow::Error,
) -> DeployError {
    let message = format!("{error:#}");
    let ty = component.component_type();
    let missing = ty
        .imports(engine)
        .map(|(name, item)| (name.to_string(), item))
        .find(|(name, _)| message.contains(&format!("`{name}`")));
    match missing {
        Some((name, item)) => {
            let kind = match item.ty {
                ComponentItem::ComponentInstance(_) => "interface",
                ComponentItem::ComponentFunc(_) => "function",
                _ => "item",
            };
            DeployError::MissingImport(format!(
                "the component imports {kind} `{name}`, which this node does not provide; \
                 remove that dependency from the component or deploy it to a node that \
                 offers it (detail: {message})"
            ))
        }
        None => DeployError::MissingImport(format!(
            "the component's imports do not match what this node provides: {message}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_kind_is_told_apart_from_the_header() {
        let core = b"\0asm\x01\0\0\0";
        let component = b"\0asm\x0d\0\x01\0";
        assert!(
            check_binary_kind(b"")
                .unwrap_err()
                .to_string()
                .contains("empty")
        );
        assert!(
            check_binary_kind(b"hello world!")
                .unwrap_err()
                .to_string()
                .contains("not WebAssembly")
        );
        assert!(
            check_binary_kind(core)
                .unwrap_err()
                .to_string()
                .contains("core WebAssembly module")
        );
        assert!(check_binary_kind(component).is_ok());
    }
}
