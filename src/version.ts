/** Loom's version, reported by `loom version`, /info and loom_build_info. */
export const VERSION = "0.1.0";
