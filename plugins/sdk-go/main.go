// An HTTP filter for Loom written against the official Proxy-Wasm Go SDK
// (https://github.com/proxy-wasm/proxy-wasm-go-sdk, Apache-2.0), in the style
// of the SDK's examples (http_headers, http_body, json_validation): a
// VMContext, a PluginContext that reads the plugin configuration in
// OnPluginStart, and an HttpContext per request. The SDK itself is not part of
// this repository: see README.md for how to build (Go >= 1.24, GOOS=wasip1,
// -buildmode=c-shared).
//
// Behaviour (root id "loom_go"):
//   - OnPluginStart: keeps the plugin configuration (fails when it is "reject")
//     and defines the counter metric "go_requests".
//   - request headers: a path ending in /deny gets a local 403 (x-go-local: 1);
//     otherwise adds x-go-sdk, replaces x-go-config with the configuration, adds
//     x-go-path (property request.path) and x-go-root (property plugin_root_id),
//     removes x-remove-me and counts the request.
//   - request body: paused until end of stream, then replaced by
//     "go[<size>]:" + body.
//   - response headers: adds x-go-config and x-go-status (property
//     response.code, an 8-byte little-endian integer), removes x-upstream-secret.
package main

import (
	"encoding/binary"
	"errors"
	"strconv"
	"strings"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

func main() {}

func init() {
	proxywasm.SetVMContext(&vmContext{})
}

// vmContext implements types.VMContext.
type vmContext struct {
	// Embed the default VM context here,
	// so that we don't need to reimplement all the methods.
	types.DefaultVMContext
}

// NewPluginContext implements types.VMContext.
func (*vmContext) NewPluginContext(contextID uint32) types.PluginContext {
	return &pluginContext{}
}

// pluginContext implements types.PluginContext.
type pluginContext struct {
	// Embed the default plugin context here,
	// so that we don't need to reimplement all the methods.
	types.DefaultPluginContext
	config   string
	requests proxywasm.MetricCounter
}

// OnPluginStart implements types.PluginContext.
func (p *pluginContext) OnPluginStart(pluginConfigurationSize int) types.OnPluginStartStatus {
	data, err := proxywasm.GetPluginConfiguration()
	if err != nil && !errors.Is(err, types.ErrorStatusNotFound) {
		proxywasm.LogCriticalf("loom_go: error reading plugin configuration: %v", err)
		return types.OnPluginStartStatusFailed
	}
	p.config = string(data)
	if p.config == "reject" {
		proxywasm.LogWarn("loom_go: configuration rejected")
		return types.OnPluginStartStatusFailed
	}
	p.requests = proxywasm.DefineCounterMetric("go_requests")
	proxywasm.LogInfof("loom_go: configured with %s", p.config)
	return types.OnPluginStartStatusOK
}

// NewHttpContext implements types.PluginContext.
func (p *pluginContext) NewHttpContext(contextID uint32) types.HttpContext {
	return &httpContext{contextID: contextID, plugin: p}
}

// httpContext implements types.HttpContext.
type httpContext struct {
	// Embed the default http context here,
	// so that we don't need to reimplement all the methods.
	types.DefaultHttpContext
	contextID uint32
	plugin    *pluginContext
}

// OnHttpRequestHeaders implements types.HttpContext.
func (ctx *httpContext) OnHttpRequestHeaders(numHeaders int, endOfStream bool) types.Action {
	path, err := proxywasm.GetHttpRequestHeader(":path")
	if err != nil {
		proxywasm.LogErrorf("loom_go: failed to get :path: %v", err)
	}
	if strings.HasSuffix(path, "/deny") {
		if err := proxywasm.SendHttpResponse(403, [][2]string{
			{"x-go-local", "1"},
			{"content-type", "text/plain"},
		}, []byte("denied by the Go SDK plugin\n"), -1); err != nil {
			proxywasm.LogErrorf("loom_go: failed to send local response: %v", err)
			proxywasm.ResumeHttpRequest()
		}
		return types.ActionPause
	}

	ctx.plugin.requests.Increment(1)
	if err := proxywasm.AddHttpRequestHeader("x-go-sdk", "proxy-wasm-go-sdk"); err != nil {
		proxywasm.LogErrorf("loom_go: failed to add request header: %v", err)
	}
	if err := proxywasm.ReplaceHttpRequestHeader("x-go-config", ctx.plugin.config); err != nil {
		proxywasm.LogErrorf("loom_go: failed to replace request header: %v", err)
	}
	if err := proxywasm.RemoveHttpRequestHeader("x-remove-me"); err != nil {
		proxywasm.LogErrorf("loom_go: failed to remove request header: %v", err)
	}
	if value, err := proxywasm.GetProperty([]string{"request", "path"}); err == nil {
		proxywasm.AddHttpRequestHeader("x-go-path", string(value))
	} else {
		proxywasm.LogErrorf("loom_go: failed to get request.path: %v", err)
	}
	if value, err := proxywasm.GetProperty([]string{"plugin_root_id"}); err == nil {
		proxywasm.AddHttpRequestHeader("x-go-root", string(value))
	} else {
		proxywasm.LogErrorf("loom_go: failed to get plugin_root_id: %v", err)
	}
	return types.ActionContinue
}

// OnHttpRequestBody implements types.HttpContext.
func (ctx *httpContext) OnHttpRequestBody(bodySize int, endOfStream bool) types.Action {
	if !endOfStream {
		// Wait until we see the entire body to replace.
		return types.ActionPause
	}
	body := []byte{}
	if bodySize > 0 {
		b, err := proxywasm.GetHttpRequestBody(0, bodySize)
		if err != nil {
			proxywasm.LogErrorf("loom_go: failed to get request body: %v", err)
			return types.ActionContinue
		}
		body = b
	}
	out := "go[" + strconv.Itoa(len(body)) + "]:" + string(body)
	if err := proxywasm.ReplaceHttpRequestBody([]byte(out)); err != nil {
		proxywasm.LogErrorf("loom_go: failed to replace request body: %v", err)
	}
	return types.ActionContinue
}

// OnHttpResponseHeaders implements types.HttpContext.
func (ctx *httpContext) OnHttpResponseHeaders(numHeaders int, endOfStream bool) types.Action {
	if err := proxywasm.AddHttpResponseHeader("x-go-config", ctx.plugin.config); err != nil {
		proxywasm.LogErrorf("loom_go: failed to add response header: %v", err)
	}
	if raw, err := proxywasm.GetProperty([]string{"response", "code"}); err == nil && len(raw) == 8 {
		code := binary.LittleEndian.Uint64(raw)
		proxywasm.AddHttpResponseHeader("x-go-status", strconv.FormatUint(code, 10))
	} else {
		proxywasm.LogErrorf("loom_go: failed to get response.code: %v", err)
	}
	if err := proxywasm.RemoveHttpResponseHeader("x-upstream-secret"); err != nil {
		proxywasm.LogErrorf("loom_go: failed to remove response header: %v", err)
	}
	return types.ActionContinue
}
