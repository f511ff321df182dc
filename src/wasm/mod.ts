/**
 * The Proxy-Wasm plugin host: load, instrument and run Proxy-Wasm plugins
 * (ABI 0.1.0, 0.2.0, 0.2.1) on routes. See README "Plugins".
 *
 * @module
 */
export {
  currentPluginManager,
  mergePluginInfo,
  type PluginChain,
  type PluginInfo,
  PluginManager,
} from "./plugin.ts";
export { runPlugins } from "./filter.ts";
