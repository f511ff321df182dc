// An HTTP filter for Loom written against the official Proxy-Wasm C++ SDK
// (https://github.com/proxy-wasm/proxy-wasm-cpp-sdk, Apache-2.0): it uses the
// SDK's RootContext/Context classes, RegisterContextFactory and helpers
// (getBufferBytes, add/replace/removeRequestHeader, getValue, sendLocalResponse,
// defineMetric, ...), modelled on the SDK's example/http_wasm_example.cc. The
// SDK itself is not part of this repository: see README.md for how to build.
//
// Root id "loom_cpp". Behaviour:
// - on_configure: keeps the plugin configuration (false when it is "reject").
// - request headers: GET .../deny answers 403 locally (x-cpp-local: 1);
//   otherwise adds x-cpp-sdk, x-cpp-config (the configuration), x-cpp-path
//   (property request.path) and x-cpp-root (property plugin_root_id), removes
//   x-remove-me, and counts the request in metric "cpp_requests".
// - request body: buffers it (StopIterationAndBuffer) and, at its end, replaces
//   it with "cpp[<size>]:" + body.
// - response headers: adds x-cpp-config and x-cpp-status (property
//   response.code, an 8-byte integer), removes x-upstream-secret.
#include <string>

#include "proxy_wasm_intrinsics.h"

class LoomRootContext : public RootContext {
public:
  explicit LoomRootContext(uint32_t id, std::string_view root_id) : RootContext(id, root_id) {}

  bool onConfigure(size_t size) override {
    config_ = getBufferBytes(WasmBufferType::PluginConfiguration, 0, size)->toString();
    if (config_ == "reject") {
      logWarn("loom_cpp: configuration rejected");
      return false;
    }
    CHECK_RESULT(defineMetric(MetricType::Counter, "cpp_requests", &requests_));
    logInfo("loom_cpp: configured with " + config_);
    return true;
  }

  const std::string &config() const { return config_; }
  uint32_t requests() const { return requests_; }

private:
  std::string config_;
  uint32_t requests_ = 0;
};

class LoomContext : public Context {
public:
  explicit LoomContext(uint32_t id, RootContext *root)
      : Context(id, root), root_(static_cast<LoomRootContext *>(root)) {}

  FilterHeadersStatus onRequestHeaders(uint32_t, bool) override {
    auto path = getRequestHeader(":path")->toString();
    if (path.size() >= 5 && path.compare(path.size() - 5, 5, "/deny") == 0) {
      sendLocalResponse(403, "cpp_denied", "denied by the C++ SDK plugin\n",
                        {{"x-cpp-local", "1"}, {"content-type", "text/plain"}});
      return FilterHeadersStatus::StopIteration;
    }
    incrementMetric(root_->requests(), 1);
    addRequestHeader("x-cpp-sdk", "proxy-wasm-cpp-sdk");
    replaceRequestHeader("x-cpp-config", root_->config());
    removeRequestHeader("x-remove-me");
    std::string value;
    if (getValue({"request", "path"}, &value)) {
      addRequestHeader("x-cpp-path", value);
    }
    if (getValue({"plugin_root_id"}, &value)) {
      addRequestHeader("x-cpp-root", value);
    }
    return FilterHeadersStatus::Continue;
  }

  FilterDataStatus onRequestBody(size_t size, bool end_of_stream) override {
    if (!end_of_stream) {
      return FilterDataStatus::StopIterationAndBuffer;
    }
    auto body = getBufferBytes(WasmBufferType::HttpRequestBody, 0, size);
    std::string out = "cpp[" + std::to_string(body->size()) + "]:" + body->toString();
    setBuffer(WasmBufferType::HttpRequestBody, 0, size, out);
    return FilterDataStatus::Continue;
  }

  FilterHeadersStatus onResponseHeaders(uint32_t, bool) override {
    addResponseHeader("x-cpp-config", root_->config());
    int64_t code = 0;
    if (getValue({"response", "code"}, &code)) {
      addResponseHeader("x-cpp-status", std::to_string(code));
    }
    removeResponseHeader("x-upstream-secret");
    return FilterHeadersStatus::Continue;
  }

private:
  LoomRootContext *root_;
};

static RegisterContextFactory register_LoomContext(CONTEXT_FACTORY(LoomContext),
                                                   ROOT_FACTORY(LoomRootContext), "loom_cpp");
