/**
 * Proxy-Wasm ABI constants (github proxy-wasm/spec, abi-versions v0.1.0,
 * v0.2.0, v0.2.1; values as used by proxy-wasm-cpp-host and the SDKs).
 *
 * @module
 */

/** Host call results (`WasmResult` in the reference host). */
export const Status = {
  OK: 0,
  NOT_FOUND: 1,
  BAD_ARGUMENT: 2,
  SERIALIZATION_FAILURE: 3,
  PARSE_FAILURE: 4,
  BAD_EXPRESSION: 5,
  INVALID_MEMORY_ACCESS: 6,
  EMPTY: 7,
  CAS_MISMATCH: 8,
  RESULT_MISMATCH: 9,
  INTERNAL_FAILURE: 10,
  BROKEN_CONNECTION: 11,
  UNIMPLEMENTED: 12,
} as const;

/** Header map types. */
export const MapType = {
  REQUEST_HEADERS: 0,
  REQUEST_TRAILERS: 1,
  RESPONSE_HEADERS: 2,
  RESPONSE_TRAILERS: 3,
  GRPC_RECEIVE_INITIAL_METADATA: 4,
  GRPC_RECEIVE_TRAILING_METADATA: 5,
  HTTP_CALL_RESPONSE_HEADERS: 6,
  HTTP_CALL_RESPONSE_TRAILERS: 7,
} as const;

/** Buffer types. */
export const BufferType = {
  HTTP_REQUEST_BODY: 0,
  HTTP_RESPONSE_BODY: 1,
  DOWNSTREAM_DATA: 2,
  UPSTREAM_DATA: 3,
  HTTP_CALL_RESPONSE_BODY: 4,
  GRPC_RECEIVE_BUFFER: 5,
  VM_CONFIGURATION: 6,
  PLUGIN_CONFIGURATION: 7,
  CALL_DATA: 8,
} as const;

/** Stream types of continue_stream / close_stream. */
export const StreamType = { HTTP_REQUEST: 0, HTTP_RESPONSE: 1, DOWNSTREAM: 2, UPSTREAM: 3 } as const;

/** Metric types of define_metric. */
export const MetricType = { COUNTER: 0, GAUGE: 1, HISTOGRAM: 2 } as const;

/** Log levels (trace..critical). */
export const LogLevel = { TRACE: 0, DEBUG: 1, INFO: 2, WARN: 3, ERROR: 4, CRITICAL: 5 } as const;

/** Supported ABI versions, by the export that marks them. */
export type AbiVersion = "0.1.0" | "0.2.0" | "0.2.1";

const MARKERS: [string, AbiVersion][] = [
  ["proxy_abi_version_0_2_1", "0.2.1"],
  ["proxy_abi_version_0_2_0", "0.2.0"],
  ["proxy_abi_version_0_1_0", "0.1.0"],
];

/** The ABI version a module declares by its exported marker function, or null. */
export function detectAbi(exportNames: readonly string[]): AbiVersion | null {
  for (const [name, v] of MARKERS) if (exportNames.includes(name)) return v;
  return null;
}

/** WASI errno values the shim returns. */
export const Errno = {
  SUCCESS: 0,
  ACCES: 2,
  BADF: 8,
  FBIG: 22,
  INVAL: 28,
  IO: 29,
  ISDIR: 31,
  MFILE: 33,
  NOENT: 44,
  NOSYS: 52,
  NOTDIR: 54,
  ROFS: 69,
  NOTCAPABLE: 76,
} as const;
