/**
 * `grpc_web`: the gateway's gRPC-Web entry. Answers the CORS preflight a
 * browser's gRPC-Web client sends (an OPTIONS naming `x-grpc-web`); the
 * translation to gRPC itself happens in the proxy's HTTP/2 path.
 *
 * The gateway runs it only for OPTIONS requests (a route's OPTIONS chain is
 * compiled with it in front), so other methods pay nothing for it.
 *
 * @module
 */
import type { Middleware } from "../../core/middleware.ts";
import { grpcWebPreflight } from "../../grpc/web.ts";

/** Answers gRPC-Web preflights; passes every other request on. */
export const grpcWebEntry: Middleware = {
  name: "grpc_web",
  request: (ctx, next) => grpcWebPreflight(ctx) ?? next(),
};
