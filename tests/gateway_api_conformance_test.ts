/**
 * The behaviours of the upstream Gateway API conformance tests for HTTPRoute,
 * re-expressed as our own table and run through a running Loom configured from
 * a directory of manifests (`gateway_api.manifests`): matching (paths, headers,
 * query, methods, precedence, hostnames), header modifiers, redirects,
 * rewrites, mirroring, weights, invalid backends and parent references,
 * timeouts, CORS, ExtensionRef, an HTTPS listener, status conditions, and a
 * hot reload of the directory. Each case names the upstream test it follows.
 * Routes of different cases get different hostnames, so all live on one Gateway.
 */
import assert from "node:assert/strict";
import { connect as tlsConnect } from "node:tls";
import { freePort, itest, startLoom, waitFor } from "./helpers.ts";
import { startUpstream, type TestUpstream } from "./upstream.ts";
import { TestCa } from "./tls_util.ts";
import {
  type Answer,
  gateway,
  gatewayClass,
  GW_GROUP,
  httpRoute,
  type Manifest,
  namespace,
  NS,
  ref,
  send,
  service,
  writeManifests,
} from "./gateway_api_util.ts";
import type { StatusEntry } from "../src/k8s/status.ts";

const WEB = "gateway-conformance-web-backend";

/** One request and what must come back. */
interface Case {
  /** The upstream conformance test this follows. */
  test: string;
  host: string;
  path: string;
  method?: string;
  headers?: Record<string, string>;
  /** Backend tag that must answer (the echo's), or a status. */
  backend?: string;
  status?: number;
  /** Path (and query) the backend must have received. */
  upstreamPath?: string;
  /** Host the backend must have received. */
  upstreamHost?: string;
  /** Request headers the backend must (value) or must not (null) have received. */
  upstreamHeaders?: Record<string, string | null>;
  /** Response headers that must (value) or must not (null) be there. */
  responseHeaders?: Record<string, string | null>;
}

const h = (host: string) => [host];
const prefix = (value: string) => ({ path: { type: "PathPrefix", value } });
const exact = (value: string) => ({ path: { type: "Exact", value } });

function routes(): Manifest[] {
  const r = httpRoute;
  return [
    // HTTPRouteMatching
    r("matching", {
      hostnames: h("matching.test"),
      rules: [
        {
          matches: [prefix("/"), { headers: [{ name: "version", value: "one" }] }],
          backendRefs: [ref("v1")],
        },
        {
          matches: [prefix("/v2"), { headers: [{ name: "version", value: "two" }] }],
          backendRefs: [ref("v2")],
        },
      ],
    }),
    // HTTPRouteExactPathMatching
    r("exact", {
      hostnames: h("exact.test"),
      rules: [
        { matches: [exact("/one")], backendRefs: [ref("v1")] },
        { matches: [exact("/two")], backendRefs: [ref("v2")] },
      ],
    }),
    // HTTPRoutePathMatchOrder, and method > headers > query precedence
    r("order", {
      hostnames: h("order.test"),
      rules: [
        { matches: [prefix("/match")], backendRefs: [ref("v3")] },
        { matches: [exact("/match")], backendRefs: [ref("v1")] },
        { matches: [exact("/match/exact")], backendRefs: [ref("v2")] },
        { matches: [prefix("/match/prefix/one")], backendRefs: [ref("v2")] },
        { matches: [prefix("/match/prefix")], backendRefs: [ref("v1")] },
        { matches: [{ ...prefix("/p"), method: "POST" }], backendRefs: [ref("v2")] },
        { matches: [{ ...prefix("/p"), headers: [{ name: "x", value: "1" }] }], backendRefs: [ref("v3")] },
        {
          matches: [{ ...prefix("/p"), headers: [{ name: "x", value: "1" }, { name: "y", value: "2" }] }],
          backendRefs: [ref("v1")],
        },
        {
          matches: [{ ...prefix("/p"), queryParams: [{ name: "q", value: "1" }] }],
          backendRefs: [ref("v2")],
        },
        { matches: [prefix("/p/long")], backendRefs: [ref("v1")] },
      ],
    }),
    // HTTPRouteMatchingAcrossRoutes: equal matches, the older route wins, then namespace/name.
    r("across-newer", { hostnames: h("across.test"), rules: [{ backendRefs: [ref("v2")] }] }, {
      created: "2024-02-01T00:00:00Z",
    }),
    r("across-older", { hostnames: h("across.test"), rules: [{ backendRefs: [ref("v1")] }] }, {
      created: "2024-01-01T00:00:00Z",
    }),
    r("across-b", { hostnames: h("across2.test"), rules: [{ backendRefs: [ref("v2")] }] }),
    r("across-a", { hostnames: h("across2.test"), rules: [{ backendRefs: [ref("v1")] }] }),
    // HTTPRouteHeaderMatching
    r("headers", {
      hostnames: h("headers.test"),
      rules: [
        { matches: [{ headers: [{ name: "version", value: "one" }] }], backendRefs: [ref("v1")] },
        { matches: [{ headers: [{ name: "version", value: "two" }] }], backendRefs: [ref("v2")] },
        {
          matches: [{ headers: [{ name: "version", value: "two" }, { name: "color", value: "orange" }] }],
          backendRefs: [ref("v1")],
        },
        {
          matches: [{ headers: [{ name: "color", type: "RegularExpression", value: "bl(ue|ack)" }] }],
          backendRefs: [ref("v3")],
        },
      ],
    }),
    // HTTPRouteQueryParamMatching
    r("query", {
      hostnames: h("query.test"),
      rules: [
        { matches: [{ queryParams: [{ name: "animal", value: "whale" }] }], backendRefs: [ref("v1")] },
        { matches: [{ queryParams: [{ name: "animal", value: "dolphin" }] }], backendRefs: [ref("v2")] },
        {
          matches: [{
            queryParams: [{ name: "animal", value: "dolphin" }, { name: "color", value: "blue" }],
          }],
          backendRefs: [ref("v3")],
        },
      ],
    }),
    // HTTPRouteMethodMatching
    r("method", {
      hostnames: h("method.test"),
      rules: [
        { matches: [{ method: "POST" }], backendRefs: [ref("v1")] },
        { matches: [{ method: "GET" }], backendRefs: [ref("v2")] },
      ],
    }),
    // HTTPRoutePathMatchRegularExpression (extended)
    r("regex", {
      hostnames: h("regex.test"),
      rules: [{
        matches: [{ path: { type: "RegularExpression", value: "/regex/[0-9]+" } }],
        backendRefs: [ref("v1")],
      }],
    }),
    // HTTPRouteRequestHeaderModifier
    r("request-headers", {
      hostnames: h("reqheaders.test"),
      rules: [{
        filters: [{
          type: "RequestHeaderModifier",
          requestHeaderModifier: {
            set: [{ name: "X-Header-Set", value: "set-overwrites-values" }],
            add: [{ name: "X-Header-Add", value: "add-appends-values" }],
            remove: ["X-Header-Remove"],
          },
        }],
        backendRefs: [ref("v1")],
      }],
    }),
    // HTTPRouteResponseHeaderModifier
    r("response-headers", {
      hostnames: h("resheaders.test"),
      rules: [{
        filters: [{
          type: "ResponseHeaderModifier",
          responseHeaderModifier: {
            set: [{ name: "X-Header-Set", value: "set-overwrites-values" }],
            add: [{ name: "X-Header-Add", value: "add-appends-values" }],
            remove: ["X-Upstream-Secret"],
          },
        }],
        backendRefs: [ref("v1")],
      }],
    }),
    // HTTPRouteBackendRequestHeaderModifier
    r("backend-headers", {
      hostnames: h("backendheaders.test"),
      rules: [{
        backendRefs: [ref("v1", {
          filters: [{
            type: "RequestHeaderModifier",
            requestHeaderModifier: { set: [{ name: "X-Backend", value: "v1-filter" }] },
          }],
        })],
      }],
    }),
    // HTTPRouteRedirectHostAndStatus, HTTPRouteRedirectPath, HTTPRouteRedirectPort, HTTPRouteRedirectScheme,
    // HTTPRouteRedirectPortAndScheme
    r("redirects", {
      hostnames: h("redirect.test"),
      rules: [
        redirectRule("/hostname-redirect", { hostname: "example.org" }),
        redirectRule("/host-and-status", { hostname: "example.org", statusCode: 301 }),
        redirectRule("/scheme-redirect", { scheme: "https" }),
        redirectRule("/port-redirect", { port: 8083 }),
        redirectRule("/scheme-and-port", { scheme: "https", port: 8443 }),
        redirectRule("/https-443", { scheme: "https", port: 443 }),
        redirectRule("/original-prefix", {
          path: { type: "ReplacePrefixMatch", replacePrefixMatch: "/replacement-prefix" },
        }),
        redirectRule("/full", {
          path: { type: "ReplaceFullPath", replaceFullPath: "/full-path-replacement" },
        }),
        redirectRule("/path-and-host", {
          hostname: "example.org",
          path: { type: "ReplacePrefixMatch", replacePrefixMatch: "/replacement-prefix" },
        }),
      ],
    }),
    // HTTPRouteRewritePath, HTTPRouteRewriteHost
    r("rewrites", {
      hostnames: h("rewrite.test"),
      rules: [
        rewriteRule("/prefix/one", { path: { type: "ReplacePrefixMatch", replacePrefixMatch: "/one" } }),
        rewriteRule("/strip-prefix", { path: { type: "ReplacePrefixMatch", replacePrefixMatch: "/" } }),
        rewriteRule("/full/one", { path: { type: "ReplaceFullPath", replaceFullPath: "/one" } }),
        rewriteRule("/rewrite-host", { hostname: "one.example.org" }),
        rewriteRule("/rewrite-both", {
          hostname: "two.example.org",
          path: { type: "ReplaceFullPath", replaceFullPath: "/two" },
        }),
      ],
    }),
    // HTTPRouteRequestMirror, HTTPRouteRequestMultipleMirrors
    r("mirror", {
      hostnames: h("mirror.test"),
      rules: [
        {
          matches: [prefix("/mirror")],
          filters: [{ type: "RequestMirror", requestMirror: { backendRef: ref("mirror-a") } }],
          backendRefs: [ref("v1")],
        },
        {
          matches: [prefix("/multi-mirror")],
          filters: [
            { type: "RequestMirror", requestMirror: { backendRef: ref("mirror-a") } },
            { type: "RequestMirror", requestMirror: { backendRef: ref("mirror-b") } },
          ],
          backendRefs: [ref("v1")],
        },
      ],
    }),
    // HTTPRouteWeight
    r("weights", {
      hostnames: h("weight.test"),
      rules: [{
        backendRefs: [ref("v1", { weight: 70 }), ref("v2", { weight: 30 }), ref("v3", { weight: 0 })],
      }],
    }),
    // HTTPRouteInvalidNonExistentBackendRef, HTTPRouteInvalidBackendRefUnknownKind,
    // HTTPRouteInvalidCrossNamespaceBackendRef, HTTPRouteReferenceGrant, HTTPRoutePartiallyInvalidViaInvalidReferenceGrant
    r("invalid-nonexistent", {
      hostnames: h("nonexistent.test"),
      rules: [{ backendRefs: [ref("nonexistent")] }],
    }),
    r("invalid-kind", {
      hostnames: h("kind.test"),
      rules: [{ backendRefs: [ref("v1", { group: "unknown.example", kind: "UnknownKind" })] }],
    }),
    r("invalid-cross-ns", {
      hostnames: h("crossns.test"),
      rules: [{ backendRefs: [ref("web-backend", { namespace: WEB })] }],
    }),
    r("granted-cross-ns", {
      hostnames: h("granted.test"),
      rules: [{ backendRefs: [ref("web-backend-granted", { namespace: WEB })] }],
    }),
    r("partially-invalid", {
      hostnames: h("partial.test"),
      rules: [{ backendRefs: [ref("v1"), ref("web-backend", { namespace: WEB })] }],
    }),
    r("no-backends", { hostnames: h("nobackends.test"), rules: [{ matches: [prefix("/")] }] }),
    r("zero-weights", {
      hostnames: h("zero.test"),
      rules: [{ backendRefs: [ref("v1", { weight: 0 }), ref("v2", { weight: 0 })] }],
    }),
    // HTTPRouteInvalidParentRefNotMatchingSectionName / ...NotMatchingListenerPort, HTTPRouteInvalidCrossNamespaceParentRef
    {
      ...r("bad-section", { hostnames: h("badsection.test"), rules: [{ backendRefs: [ref("v1")] }] }),
      spec: {
        parentRefs: [{ name: "same-namespace", namespace: NS, sectionName: "nope" }],
        hostnames: h("badsection.test"),
        rules: [{ backendRefs: [ref("v1")] }],
      },
    },
    {
      ...r("bad-port", {}),
      spec: {
        parentRefs: [{ name: "same-namespace", namespace: NS, port: 1 }],
        hostnames: h("badport.test"),
        rules: [{ backendRefs: [ref("v1")] }],
      },
    },
    r(
      "other-ns",
      { hostnames: h("otherns.test"), rules: [{ backendRefs: [ref("v1", { namespace: NS })] }] },
      {
        ns: WEB,
      },
    ),
    // HTTPRouteTimeoutRequest, HTTPRouteTimeoutBackendRequest
    r("timeouts", {
      hostnames: h("timeout.test"),
      rules: [
        { matches: [prefix("/request")], timeouts: { request: "300ms" }, backendRefs: [ref("slow")] },
        { matches: [prefix("/backend")], timeouts: { backendRequest: "300ms" }, backendRefs: [ref("slow")] },
        { matches: [prefix("/fast")], timeouts: { request: "5s" }, backendRefs: [ref("slow")] },
      ],
    }),
    // HTTPRouteCORS (experimental)
    r("cors", {
      hostnames: h("cors.test"),
      rules: [{
        filters: [{
          type: "CORS",
          cors: {
            allowOrigins: ["https://app.example", "https://*.wild.example"],
            allowMethods: ["GET", "PUT"],
            allowHeaders: ["x-custom"],
            maxAge: 120,
          },
        }],
        backendRefs: [ref("v1")],
      }],
    }),
    // ExtensionRef: Loom middleware by name; an unknown one answers 500.
    r("extension", {
      hostnames: h("extension.test"),
      rules: [
        {
          matches: [prefix("/known")],
          filters: [{
            type: "ExtensionRef",
            extensionRef: { group: "loom.dev", kind: "Middleware", name: "tag" },
          }],
          backendRefs: [ref("v1")],
        },
        {
          matches: [prefix("/unknown")],
          filters: [{
            type: "ExtensionRef",
            extensionRef: { group: "loom.dev", kind: "Middleware", name: "nope" },
          }],
          backendRefs: [ref("v1")],
        },
      ],
    }),
    // HTTPRouteHostnameIntersection (gateway "hostnames", listeners with hostnames)
    r("intersect-specific", {
      parentRefs: [{ name: "hostnames", namespace: NS, sectionName: "specific" }],
      hostnames: ["non.matching.com", "*.nonmatchingwildcard.io", "very.specific.com"],
      rules: [{ matches: [prefix("/s1")], backendRefs: [ref("v1")] }],
    }),
    r("intersect-wildcard", {
      parentRefs: [{ name: "hostnames", namespace: NS, sectionName: "wildcard" }],
      hostnames: ["*.wildcard.io"],
      rules: [{ matches: [prefix("/s2")], backendRefs: [ref("v2")] }],
    }),
    r("intersect-narrower", {
      parentRefs: [{ name: "hostnames", namespace: NS, sectionName: "anotherwildcard" }],
      hostnames: ["very.specific.anotherwildcard.io"],
      rules: [{ matches: [prefix("/s3")], backendRefs: [ref("v3")] }],
    }),
    r("intersect-none", {
      parentRefs: [{ name: "hostnames", namespace: NS }],
      hostnames: ["specific.but.wrong.com", "wildcard.io"],
      rules: [{ backendRefs: [ref("v1")] }],
    }),
    // HTTPRouteListenerHostnameMatching
    r("listener-bar", {
      parentRefs: [{ name: "hostnames", namespace: NS, sectionName: "bar" }],
      rules: [{ backendRefs: [ref("v1")] }],
    }),
    r("listener-foo-bar", {
      parentRefs: [{ name: "hostnames", namespace: NS, sectionName: "foo-bar" }],
      rules: [{ backendRefs: [ref("v2")] }],
    }),
    r("listener-wildcards", {
      parentRefs: [
        { name: "hostnames", namespace: NS, sectionName: "wild-bar" },
        { name: "hostnames", namespace: NS, sectionName: "wild-foo" },
      ],
      rules: [{ backendRefs: [ref("v3")] }],
    }),
    // HTTPRouteHTTPSListener
    r("https", {
      parentRefs: [{ name: "tls", namespace: NS }],
      hostnames: ["secure.test"],
      rules: [{ backendRefs: [ref("v1")] }],
    }),
  ];
}

function redirectRule(path: string, requestRedirect: Record<string, unknown>) {
  return { matches: [prefix(path)], filters: [{ type: "RequestRedirect", requestRedirect }] };
}

function rewriteRule(path: string, urlRewrite: Record<string, unknown>) {
  return { matches: [prefix(path)], filters: [{ type: "URLRewrite", urlRewrite }], backendRefs: [ref("v1")] };
}

const b = (backend: string) => ({ backend });

/** The table. */
function cases(port: number): Case[] {
  const rd = (path: string, status: number, location: string): Case => ({
    test: "HTTPRouteRedirect*",
    host: "redirect.test",
    path,
    status,
    responseHeaders: { location },
  });
  const rw = (path: string, upstreamPath: string, upstreamHost?: string): Case => ({
    test: "HTTPRouteRewrite*",
    host: "rewrite.test",
    path,
    backend: "v1",
    upstreamPath,
    upstreamHost,
  });
  return [
    { test: "HTTPRouteMatching", host: "matching.test", path: "/", ...b("v1") },
    { test: "HTTPRouteMatching", host: "matching.test", path: "/example", ...b("v1") },
    { test: "HTTPRouteMatching", host: "matching.test", path: "/", headers: { version: "one" }, ...b("v1") },
    { test: "HTTPRouteMatching", host: "matching.test", path: "/v2", ...b("v2") },
    { test: "HTTPRouteMatching", host: "matching.test", path: "/v2/example", ...b("v2") },
    { test: "HTTPRouteMatching", host: "matching.test", path: "/v2/", ...b("v2") },
    { test: "HTTPRouteMatching", host: "matching.test", path: "/v2example", ...b("v1") },
    { test: "HTTPRouteMatching", host: "matching.test", path: "/", headers: { version: "two" }, ...b("v2") },
    { test: "HTTPRouteExactPathMatching", host: "exact.test", path: "/one", ...b("v1") },
    { test: "HTTPRouteExactPathMatching", host: "exact.test", path: "/two", ...b("v2") },
    { test: "HTTPRouteExactPathMatching", host: "exact.test", path: "/one/example", status: 404 },
    { test: "HTTPRouteExactPathMatching", host: "exact.test", path: "/two/", status: 404 },
    { test: "HTTPRouteExactPathMatching", host: "exact.test", path: "/Two", status: 404 },
    { test: "HTTPRoutePathMatchOrder", host: "order.test", path: "/match/exact/one", ...b("v3") },
    { test: "HTTPRoutePathMatchOrder", host: "order.test", path: "/match/exact", ...b("v2") },
    { test: "HTTPRoutePathMatchOrder", host: "order.test", path: "/match", ...b("v1") },
    { test: "HTTPRoutePathMatchOrder", host: "order.test", path: "/match/prefix/one/any", ...b("v2") },
    { test: "HTTPRoutePathMatchOrder", host: "order.test", path: "/match/prefix/any", ...b("v1") },
    { test: "HTTPRoutePathMatchOrder", host: "order.test", path: "/match/any", ...b("v3") },
    {
      test: "precedence: method > headers",
      host: "order.test",
      path: "/p",
      method: "POST",
      headers: { x: "1" },
      ...b("v2"),
    },
    {
      test: "precedence: more headers",
      host: "order.test",
      path: "/p",
      headers: { x: "1", y: "2" },
      ...b("v1"),
    },
    {
      test: "precedence: headers > query",
      host: "order.test",
      path: "/p?q=1",
      headers: { x: "1" },
      ...b("v3"),
    },
    { test: "precedence: query", host: "order.test", path: "/p?q=1", ...b("v2") },
    {
      test: "precedence: longer prefix > method",
      host: "order.test",
      path: "/p/long",
      method: "POST",
      ...b("v1"),
    },
    { test: "HTTPRouteMatchingAcrossRoutes: oldest", host: "across.test", path: "/", ...b("v1") },
    { test: "HTTPRouteMatchingAcrossRoutes: name", host: "across2.test", path: "/", ...b("v1") },
    {
      test: "HTTPRouteHeaderMatching",
      host: "headers.test",
      path: "/",
      headers: { version: "one" },
      ...b("v1"),
    },
    {
      test: "HTTPRouteHeaderMatching",
      host: "headers.test",
      path: "/",
      headers: { VERSION: "one" },
      ...b("v1"),
    },
    {
      test: "HTTPRouteHeaderMatching",
      host: "headers.test",
      path: "/",
      headers: { version: "two" },
      ...b("v2"),
    },
    {
      test: "HTTPRouteHeaderMatching",
      host: "headers.test",
      path: "/",
      headers: { version: "two", color: "orange" },
      ...b("v1"),
    },
    {
      test: "HTTPRouteHeaderMatching",
      host: "headers.test",
      path: "/",
      headers: { color: "black" },
      ...b("v3"),
    },
    {
      test: "HTTPRouteHeaderMatching",
      host: "headers.test",
      path: "/",
      headers: { color: "blues" },
      status: 404,
    },
    {
      test: "HTTPRouteHeaderMatching",
      host: "headers.test",
      path: "/",
      headers: { version: "ONE" },
      status: 404,
    },
    { test: "HTTPRouteQueryParamMatching", host: "query.test", path: "/?animal=whale", ...b("v1") },
    { test: "HTTPRouteQueryParamMatching", host: "query.test", path: "/?animal=dolphin", ...b("v2") },
    {
      test: "HTTPRouteQueryParamMatching",
      host: "query.test",
      path: "/?animal=dolphin&color=blue",
      ...b("v3"),
    },
    { test: "HTTPRouteQueryParamMatching", host: "query.test", path: "/?ANIMAL=whale", status: 404 },
    { test: "HTTPRouteMethodMatching", host: "method.test", path: "/", method: "POST", ...b("v1") },
    { test: "HTTPRouteMethodMatching", host: "method.test", path: "/", method: "GET", ...b("v2") },
    { test: "HTTPRouteMethodMatching", host: "method.test", path: "/", method: "DELETE", status: 404 },
    { test: "HTTPRoutePathMatchRegularExpression", host: "regex.test", path: "/regex/123", ...b("v1") },
    { test: "HTTPRoutePathMatchRegularExpression", host: "regex.test", path: "/regex/abc", status: 404 },
    { test: "HTTPRoutePathMatchRegularExpression", host: "regex.test", path: "/regex/1/x", status: 404 },
    {
      test: "HTTPRouteRequestHeaderModifier",
      host: "reqheaders.test",
      path: "/",
      ...b("v1"),
      upstreamHeaders: { "x-header-set": "set-overwrites-values", "x-header-add": "add-appends-values" },
    },
    {
      test: "HTTPRouteRequestHeaderModifier",
      host: "reqheaders.test",
      path: "/",
      headers: { "x-header-set": "some-other-value", "X-Header-Add": "header-val-1", "x-header-remove": "r" },
      ...b("v1"),
      upstreamHeaders: {
        "x-header-set": "set-overwrites-values",
        "x-header-add": "header-val-1, add-appends-values",
        "x-header-remove": null,
      },
    },
    {
      test: "HTTPRouteResponseHeaderModifier",
      host: "resheaders.test",
      path: "/",
      ...b("v1"),
      responseHeaders: {
        "x-header-set": "set-overwrites-values",
        "x-header-add": "add-appends-values",
        "x-upstream-secret": null,
      },
    },
    {
      test: "HTTPRouteBackendRequestHeaderModifier",
      host: "backendheaders.test",
      path: "/",
      ...b("v1"),
      upstreamHeaders: { "x-backend": "v1-filter" },
    },
    rd("/hostname-redirect", 302, `http://example.org:${port}/hostname-redirect`),
    rd("/host-and-status", 301, `http://example.org:${port}/host-and-status`),
    rd("/scheme-redirect", 302, "https://redirect.test/scheme-redirect"),
    rd("/port-redirect", 302, "http://redirect.test:8083/port-redirect"),
    rd("/scheme-and-port", 302, "https://redirect.test:8443/scheme-and-port"),
    rd("/https-443", 302, "https://redirect.test/https-443"),
    rd("/original-prefix/lemon", 302, `http://redirect.test:${port}/replacement-prefix/lemon`),
    rd("/original-prefix", 302, `http://redirect.test:${port}/replacement-prefix`),
    rd("/full/lemon?x=1", 302, `http://redirect.test:${port}/full-path-replacement?x=1`),
    rd("/path-and-host/x", 302, `http://example.org:${port}/replacement-prefix/x`),
    rw("/prefix/one/two", "/one/two"),
    rw("/prefix/one", "/one"),
    rw("/prefix/one/", "/one/"),
    rw("/prefix/one/two?q=1", "/one/two?q=1"),
    rw("/strip-prefix/three", "/three"),
    rw("/strip-prefix", "/"),
    rw("/full/one/two", "/one"),
    rw("/full/one?q=a", "/one?q=a"),
    rw("/rewrite-host/x", "/rewrite-host/x", "one.example.org"),
    rw("/rewrite-both/x", "/two", "two.example.org"),
    { test: "HTTPRouteInvalidNonExistentBackendRef", host: "nonexistent.test", path: "/", status: 500 },
    { test: "HTTPRouteInvalidBackendRefUnknownKind", host: "kind.test", path: "/", status: 500 },
    { test: "HTTPRouteInvalidCrossNamespaceBackendRef", host: "crossns.test", path: "/", status: 500 },
    { test: "HTTPRouteReferenceGrant", host: "granted.test", path: "/", ...b("v3") },
    { test: "no backendRefs", host: "nobackends.test", path: "/", status: 500 },
    { test: "all weights 0", host: "zero.test", path: "/", status: 500 },
    {
      test: "HTTPRouteInvalidParentRefNotMatchingSectionName",
      host: "badsection.test",
      path: "/",
      status: 404,
    },
    {
      test: "HTTPRouteInvalidParentRefNotMatchingListenerPort",
      host: "badport.test",
      path: "/",
      status: 404,
    },
    { test: "HTTPRouteInvalidCrossNamespaceParentRef", host: "otherns.test", path: "/", status: 404 },
    { test: "HTTPRouteTimeoutRequest", host: "timeout.test", path: "/request", status: 504 },
    { test: "HTTPRouteTimeoutBackendRequest", host: "timeout.test", path: "/backend", status: 504 },
    { test: "HTTPRouteTimeout (within)", host: "timeout.test", path: "/fast", ...b("slow") },
    {
      test: "HTTPRouteCORS: allowed origin",
      host: "cors.test",
      path: "/",
      headers: { origin: "https://a.wild.example" },
      ...b("v1"),
      responseHeaders: { "access-control-allow-origin": "https://a.wild.example" },
    },
    {
      test: "HTTPRouteCORS: preflight",
      host: "cors.test",
      path: "/",
      method: "OPTIONS",
      headers: { origin: "https://app.example", "access-control-request-method": "PUT" },
      responseHeaders: {
        "access-control-allow-origin": "https://app.example",
        "access-control-max-age": "120",
      },
    },
    {
      test: "HTTPRouteCORS: other origin",
      host: "cors.test",
      path: "/",
      headers: { origin: "https://evil.example" },
      ...b("v1"),
      responseHeaders: { "access-control-allow-origin": null },
    },
    {
      test: "ExtensionRef Middleware",
      host: "extension.test",
      path: "/known",
      ...b("v1"),
      upstreamHeaders: { "x-ext": "tagged" },
    },
    { test: "ExtensionRef unknown", host: "extension.test", path: "/unknown", status: 500 },
  ];
}

/** Cases of the "hostnames" Gateway (its own port). */
const hostnameCases: Case[] = [
  { test: "HTTPRouteHostnameIntersection", host: "very.specific.com", path: "/s1", ...b("v1") },
  { test: "HTTPRouteHostnameIntersection", host: "non.matching.com", path: "/s1", status: 404 },
  { test: "HTTPRouteHostnameIntersection", host: "foo.nonmatchingwildcard.io", path: "/s1", status: 404 },
  { test: "HTTPRouteHostnameIntersection", host: "foo.wildcard.io", path: "/s2", ...b("v2") },
  { test: "HTTPRouteHostnameIntersection", host: "foo.bar.wildcard.io", path: "/s2", ...b("v2") },
  { test: "HTTPRouteHostnameIntersection", host: "wildcard.io", path: "/s2", status: 404 },
  {
    test: "HTTPRouteHostnameIntersection",
    host: "very.specific.anotherwildcard.io",
    path: "/s3",
    ...b("v3"),
  },
  { test: "HTTPRouteHostnameIntersection", host: "other.anotherwildcard.io", path: "/s3", status: 404 },
  { test: "HTTPRouteListenerHostnameMatching", host: "bar.com", path: "/", ...b("v1") },
  { test: "HTTPRouteListenerHostnameMatching", host: "foo.bar.com", path: "/", ...b("v2") },
  { test: "HTTPRouteListenerHostnameMatching", host: "baz.bar.com", path: "/", ...b("v3") },
  { test: "HTTPRouteListenerHostnameMatching", host: "boo.baz.bar.com", path: "/", ...b("v3") },
  { test: "HTTPRouteListenerHostnameMatching", host: "baz.foo.com", path: "/", ...b("v3") },
  { test: "HTTPRouteListenerHostnameMatching", host: "foo.com", path: "/", status: 404 },
  { test: "HTTPRouteListenerHostnameMatching", host: "no.matching.host", path: "/", status: 404 },
];

/** Checks one case; returns what is wrong ("" when it passed). */
async function check(port: number, c: Case): Promise<string> {
  let a: Answer;
  try {
    a = await send(port, c.host, c.path, { method: c.method, headers: c.headers });
  } catch (e) {
    return String(e);
  }
  const problems: string[] = [];
  const want = c.status ?? (c.backend !== undefined ? 200 : undefined);
  if (want !== undefined && a.status !== want) {
    problems.push(`status ${a.status} (want ${want}): ${a.body.slice(0, 120)}`);
  }
  if (c.backend !== undefined && a.echo?.tag !== c.backend) {
    problems.push(`backend ${a.echo?.tag} (want ${c.backend})`);
  }
  if (c.upstreamPath !== undefined && a.echo?.target !== c.upstreamPath) {
    problems.push(`upstream path ${a.echo?.target} (want ${c.upstreamPath})`);
  }
  if (c.upstreamHost !== undefined && a.echo?.headers.host !== c.upstreamHost) {
    problems.push(`upstream host ${a.echo?.headers.host} (want ${c.upstreamHost})`);
  }
  for (const [k, v] of Object.entries(c.upstreamHeaders ?? {})) {
    const got = a.echo?.headers[k];
    if ((got ?? null) !== v) problems.push(`upstream ${k}: ${got} (want ${v})`);
  }
  for (const [k, v] of Object.entries(c.responseHeaders ?? {})) {
    const got = a.header(k);
    if ((got ?? null) !== v) problems.push(`response ${k}: ${got} (want ${v})`);
  }
  return problems.join("; ");
}

interface Setup {
  dir: string;
  port: number;
  hostPort: number;
  tlsPort: number;
  ca: TestCa;
  backends: Record<string, TestUpstream>;
  close(): Promise<void>;
  loom: Awaited<ReturnType<typeof startLoom>>;
}

async function setup(): Promise<Setup> {
  const dir = Deno.makeTempDirSync({ prefix: "loom-gwapi-test-" });
  const pki = Deno.makeTempDirSync({ prefix: "loom-gwapi-pki-" });
  const ca = await TestCa.create(pki);
  const leaf = await ca.leaf("secure", "secure.test", ["DNS:secure.test"]);
  const backends: Record<string, TestUpstream> = {};
  for (const tag of ["v1", "v2", "v3", "mirror-a", "mirror-b"]) backends[tag] = startUpstream({ echo: tag });
  backends.slow = startUpstream({ echo: "slow", delayMs: 1000 });
  const port = freePort(), hostPort = freePort(), tlsPort = freePort();
  const svc = (name: string, up: TestUpstream, ns = NS) => service(name, up.port, ns);
  const docs: Manifest[] = [
    namespace(NS),
    namespace(WEB),
    gatewayClass(),
    gatewayClass("other", "example.com/other-controller"),
    gateway("same-namespace", [{ name: "http", port, protocol: "HTTP" }]),
    gateway("hostnames", [
      { name: "specific", port: hostPort, protocol: "HTTP", hostname: "very.specific.com" },
      { name: "wildcard", port: hostPort, protocol: "HTTP", hostname: "*.wildcard.io" },
      { name: "anotherwildcard", port: hostPort, protocol: "HTTP", hostname: "*.anotherwildcard.io" },
      { name: "bar", port: hostPort, protocol: "HTTP", hostname: "bar.com" },
      { name: "foo-bar", port: hostPort, protocol: "HTTP", hostname: "foo.bar.com" },
      { name: "wild-bar", port: hostPort, protocol: "HTTP", hostname: "*.bar.com" },
      { name: "wild-foo", port: hostPort, protocol: "HTTP", hostname: "*.foo.com" },
    ]),
    gateway("tls", [{
      name: "https",
      port: tlsPort,
      protocol: "HTTPS",
      hostname: "secure.test",
      tls: { certificateRefs: [{ name: "secure-cert" }] },
    }, {
      name: "https-bad",
      port: tlsPort,
      protocol: "HTTPS",
      hostname: "bad.test",
      tls: { certificateRefs: [{ name: "missing-cert" }] },
    }, { name: "tcp", port: tlsPort + 0, protocol: "TCP" }]),
    gateway("not-ours", [{ name: "http", port: freePort(), protocol: "HTTP" }], NS, "other"),
    {
      apiVersion: "v1",
      kind: "Secret",
      metadata: { name: "secure-cert", namespace: NS },
      type: "kubernetes.io/tls",
      data: {
        "tls.crt": btoa(Deno.readTextFileSync(leaf.cert)),
        "tls.key": btoa(Deno.readTextFileSync(leaf.key)),
      },
    },
    ...svc("v1", backends.v1),
    ...svc("v2", backends.v2),
    ...svc("v3", backends.v3),
    ...svc("slow", backends.slow),
    ...svc("mirror-a", backends["mirror-a"]),
    ...svc("mirror-b", backends["mirror-b"]),
    ...svc("web-backend", backends.v3, WEB),
    ...svc("web-backend-granted", backends.v3, WEB),
    {
      apiVersion: `${GW_GROUP}/v1beta1`,
      kind: "ReferenceGrant",
      metadata: { name: "allow-routes", namespace: WEB },
      spec: {
        from: [{ group: GW_GROUP, kind: "HTTPRoute", namespace: NS }],
        to: [{ group: "", kind: "Service", name: "web-backend-granted" }],
      },
    },
  ];
  writeManifests(dir, "infra.yaml", docs);
  writeManifests(dir, "routes.yaml", routes());
  const loom = await startLoom(
    `gateway_api:\n  manifests: ${dir}\n  listen_host: 127.0.0.1\n` +
      `  middleware:\n    tag: [{ headers: { request: { set: { x-ext: tagged } } } }]\n`,
    { watch: true },
  );
  return {
    dir,
    port,
    hostPort,
    tlsPort,
    ca,
    backends,
    loom,
    close: async () => {
      await loom.close();
      for (const u of Object.values(backends)) await u.close();
      Deno.removeSync(dir, { recursive: true });
      Deno.removeSync(pki, { recursive: true });
    },
  };
}

function statusOf(s: Setup, kind: string, name: string): StatusEntry | undefined {
  return s.loom.sup.gatewayApi.statuses().find((x) => x.kind === kind && x.name === name);
}

// deno-lint-ignore no-explicit-any
function routeCondition(s: Setup, name: string, type: string): any {
  return statusOf(s, "HTTPRoute", name)?.status.parents[0].conditions.find((c: { type: string }) =>
    c.type === type
  );
}

itest(
  "gateway api: the HTTPRoute conformance table through a gateway configured from manifests",
  async () => {
    const s = await setup();
    try {
      const failures: string[] = [];
      const table = [
        ...cases(s.port).map((c) => [s.port, c] as const),
        ...hostnameCases.map((c) => [s.hostPort, c] as const),
      ];
      for (const [port, c] of table) {
        const why = await check(port, c);
        if (why !== "") failures.push(`${c.test}: ${c.method ?? "GET"} ${c.host}${c.path}: ${why}`);
      }
      assert.deepEqual(failures, [], `${failures.length} of ${table.length} cases failed`);
    } finally {
      await s.close();
    }
  },
);

itest("gateway api: mirrors, weights, partially invalid backends, HTTPS, status, hot reload", async () => {
  const s = await setup();
  try {
    // HTTPRouteRequestMirror / HTTPRouteRequestMultipleMirrors: v1 answers, the mirrors get copies.
    const a = await send(s.port, "mirror.test", "/mirror/x");
    assert.equal(a.echo?.tag, "v1");
    await waitFor(
      "mirror-a got /mirror/x",
      () => s.backends["mirror-a"].seen.some((r) => r.url.endsWith("/mirror/x")),
    );
    await send(s.port, "mirror.test", "/multi-mirror/y");
    await waitFor(
      "mirror-a got /multi-mirror/y",
      () => s.backends["mirror-a"].seen.some((r) => r.url.endsWith("/multi-mirror/y")),
    );
    await waitFor(
      "mirror-b got /multi-mirror/y",
      () => s.backends["mirror-b"].seen.some((r) => r.url.endsWith("/multi-mirror/y")),
    );
    assert.equal(s.backends["mirror-b"].seen.some((r) => r.url.endsWith("/mirror/x")), false);

    // HTTPRouteWeight: 70/30/0.
    const counts: Record<string, number> = {};
    const n = 500;
    for (let i = 0; i < n; i++) {
      const r = await send(s.port, "weight.test", "/");
      counts[r.echo?.tag ?? String(r.status)] = (counts[r.echo?.tag ?? String(r.status)] ?? 0) + 1;
    }
    assert.ok(Math.abs(counts.v1 / n - 0.7) < 0.05, JSON.stringify(counts));
    assert.ok(Math.abs(counts.v2 / n - 0.3) < 0.05, JSON.stringify(counts));
    assert.equal(counts.v3, undefined);

    // HTTPRoutePartiallyInvalidViaInvalidReferenceGrant: the invalid backend's share gets 500.
    const partial: Record<string, number> = {};
    for (let i = 0; i < 100; i++) {
      const r = await send(s.port, "partial.test", "/");
      partial[r.status] = (partial[r.status] ?? 0) + 1;
    }
    assert.ok(partial[200] >= 40 && partial[500] >= 40, JSON.stringify(partial));

    // HTTPRouteHTTPSListener: TLS from the Secret, routed by hostname.
    const text = await new Promise<string>((resolve, reject) => {
      const sock = tlsConnect({
        host: "127.0.0.1",
        port: s.tlsPort,
        servername: "secure.test",
        ca: Deno.readTextFileSync(s.ca.cert),
      }, () => sock.write("GET / HTTP/1.1\r\nHost: secure.test\r\nConnection: close\r\n\r\n"));
      let got = "";
      sock.on("data", (d: Uint8Array) => got += new TextDecoder().decode(d));
      sock.on("end", () => resolve(got));
      sock.on("error", reject);
    });
    assert.match(text, /^HTTP\/1\.1 200/);
    assert.match(text, /"tag":"v1"/);

    // Status: class accepted, gateways programmed, listener conditions, route conditions.
    const cls = statusOf(s, "GatewayClass", "loom");
    assert.equal(cls?.status.conditions[0].status, "True");
    assert.equal(statusOf(s, "GatewayClass", "other"), undefined);
    assert.equal(statusOf(s, "Gateway", "not-ours"), undefined);
    const gw = statusOf(s, "Gateway", "same-namespace")!;
    assert.equal(gw.status.conditions.find((c: { type: string }) => c.type === "Programmed").status, "True");
    assert.ok(gw.status.listeners[0].attachedRoutes >= 20, String(gw.status.listeners[0].attachedRoutes));
    const tls = statusOf(s, "Gateway", "tls")!;
    // deno-lint-ignore no-explicit-any
    const listener = (name: string) => tls.status.listeners.find((l: any) => l.name === name);
    // deno-lint-ignore no-explicit-any
    const cond = (l: any, type: string) => l.conditions.find((c: { type: string }) => c.type === type);
    assert.equal(cond(listener("https"), "Programmed").status, "True");
    assert.equal(cond(listener("https-bad"), "ResolvedRefs").reason, "InvalidCertificateRef");
    assert.equal(cond(listener("tcp"), "Accepted").reason, "UnsupportedProtocol");
    assert.equal(routeCondition(s, "matching", "Accepted").status, "True");
    assert.equal(routeCondition(s, "matching", "ResolvedRefs").status, "True");
    assert.equal(routeCondition(s, "invalid-nonexistent", "ResolvedRefs").reason, "BackendNotFound");
    assert.equal(routeCondition(s, "invalid-kind", "ResolvedRefs").reason, "InvalidKind");
    assert.equal(routeCondition(s, "invalid-cross-ns", "ResolvedRefs").reason, "RefNotPermitted");
    assert.equal(routeCondition(s, "granted-cross-ns", "ResolvedRefs").status, "True");
    assert.equal(routeCondition(s, "bad-section", "Accepted").reason, "NoMatchingParent");
    assert.equal(routeCondition(s, "bad-port", "Accepted").reason, "NoMatchingParent");
    assert.equal(routeCondition(s, "intersect-none", "Accepted").reason, "NoMatchingListenerHostname");
    assert.equal(
      statusOf(s, "HTTPRoute", "other-ns")?.status.parents[0].conditions[0].reason,
      "NotAllowedByListeners",
    );

    // Hot reload: a changed route file applies without a restart.
    const before = await send(s.port, "exact.test", "/three");
    assert.equal(before.status, 404);
    writeManifests(s.dir, "late.yaml", [
      httpRoute("late", {
        hostnames: ["exact.test"],
        rules: [{ matches: [exact("/three")], backendRefs: [ref("v3")] }],
      }),
    ]);
    await waitFor(
      "the new route",
      async () => (await send(s.port, "exact.test", "/three")).echo?.tag === "v3",
      10_000,
    );
    Deno.removeSync(`${s.dir}/late.yaml`);
    await waitFor(
      "the route gone",
      async () => (await send(s.port, "exact.test", "/three")).status === 404,
      10_000,
    );
    // An invalid manifest never takes the gateway down.
    Deno.writeTextFileSync(`${s.dir}/broken.yaml`, "kind: HTTPRoute\nmetadata: [\n");
    await new Promise((r) => setTimeout(r, 500));
    assert.equal((await send(s.port, "exact.test", "/one")).echo?.tag, "v1");
  } finally {
    await s.close();
  }
});
