// An HTTP filter for Loom written against the official Proxy-Wasm Rust SDK
// (crate `proxy-wasm`, https://github.com/proxy-wasm/proxy-wasm-rust-sdk,
// Apache-2.0), in the style of the SDK's examples (http_headers, http_body,
// http_config): a RootContext created with `proxy_wasm::set_root_context` that
// hands out HttpContexts, the SDK's trait helpers for headers, bodies,
// properties and local responses, and `proxy_wasm::hostcalls` for metrics.
// The SDK itself is not part of this repository: see README.md for the build.
//
// Root id (YAML `root_id`) "loom_rust" (the Rust SDK has one root factory; the
// id only shows up in the `plugin_root_id` property). Behaviour:
// - on_configure: keeps the plugin configuration (false when it is "reject")
//   and defines the counter metric "rust_requests".
// - request headers: a path ending in /deny is answered locally with 403
//   (x-rust-local: 1); otherwise adds x-rust-sdk, replaces x-rust-config with
//   the configuration, adds x-rust-path (property request.path) and x-rust-root
//   (property plugin_root_id), removes x-remove-me and counts the request.
// - request body: Action::Pause until end_of_stream (Loom buffers), then the
//   body is replaced by "rust[<size>]:" + body.
// - response headers: adds x-rust-config and x-rust-status (property
//   response.code, an 8-byte little-endian integer), removes x-upstream-secret.
use log::{info, warn};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::*;
use proxy_wasm::types::*;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> {
        Box::new(LoomRoot { config: String::new(), requests: 0 })
    });
}}

struct LoomRoot {
    config: String,
    requests: u32,
}

impl Context for LoomRoot {}

impl RootContext for LoomRoot {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        self.config = self
            .get_plugin_configuration()
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default();
        if self.config == "reject" {
            warn!("loom_rust: configuration rejected");
            return false;
        }
        match hostcalls::define_metric(MetricType::Counter, "rust_requests") {
            Ok(id) => self.requests = id,
            Err(status) => {
                warn!("loom_rust: define_metric failed: {:?}", status);
                return false;
            }
        }
        info!("loom_rust: configured with {}", self.config);
        true
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(LoomHttp {
            context_id,
            config: self.config.clone(),
            requests: self.requests,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct LoomHttp {
    context_id: u32,
    config: String,
    requests: u32,
}

impl Context for LoomHttp {}

impl LoomHttp {
    fn property_string(&self, path: Vec<&str>) -> Option<String> {
        self.get_property(path)
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
    }
}

impl HttpContext for LoomHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let path = self.get_http_request_header(":path").unwrap_or_default();
        if path.ends_with("/deny") {
            info!("loom_rust: #{} denied {}", self.context_id, path);
            self.send_http_response(
                403,
                vec![("x-rust-local", "1"), ("content-type", "text/plain")],
                Some(b"denied by the Rust SDK plugin\n"),
            );
            return Action::Pause;
        }
        if let Err(status) = hostcalls::increment_metric(self.requests, 1) {
            warn!("loom_rust: increment_metric failed: {:?}", status);
        }
        self.add_http_request_header("x-rust-sdk", "proxy-wasm-rust-sdk");
        self.set_http_request_header("x-rust-config", Some(&self.config));
        self.set_http_request_header("x-remove-me", None);
        if let Some(value) = self.property_string(vec!["request", "path"]) {
            self.add_http_request_header("x-rust-path", &value);
        }
        if let Some(value) = self.property_string(vec!["plugin_root_id"]) {
            self.add_http_request_header("x-rust-root", &value);
        }
        Action::Continue
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if !end_of_stream {
            // Wait for the whole body: the host buffers it and calls again.
            return Action::Pause;
        }
        let body = self.get_http_request_body(0, body_size).unwrap_or_default();
        let mut out = format!("rust[{}]:", body.len()).into_bytes();
        out.extend_from_slice(&body);
        self.set_http_request_body(0, body_size, &out);
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        self.add_http_response_header("x-rust-config", &self.config);
        if let Some(bytes) = self.get_property(vec!["response", "code"]) {
            if bytes.len() == 8 {
                let mut raw = [0u8; 8];
                raw.copy_from_slice(&bytes);
                let code = i64::from_le_bytes(raw);
                self.add_http_response_header("x-rust-status", &code.to_string());
            }
        }
        self.set_http_response_header("x-upstream-secret", None);
        Action::Continue
    }
}
