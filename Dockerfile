# Loom's container image: the bundle (deno task bundle) on Deno from npm, on Debian 12 slim, as a
# non-root user. Multi-arch: `docker buildx build --platform linux/amd64,linux/arm64` picks the Deno
# binary of each platform (npm @deno/linux-x64-glibc or @deno/linux-arm64-glibc).
#
#   docker build --build-arg LOOM_BUILD_COMMIT=$(git rev-parse --short HEAD) -t loom:0.1.0 .
#   docker run --rm -p 8080:8080 loom:0.1.0                      # the default config (demo echo)
#   docker run --rm -p 8080:8080 -v $PWD/my-loom:/etc/loom:ro loom:0.1.0
#
# The config is /etc/loom/loom.yaml; paths in it are relative to /etc/loom. HEALTHCHECK asks the admin
# API's /health at LOOM_HEALTH_URL (default http://127.0.0.1:9091/health, the default admin address).
ARG DENO_VERSION=2.9.6

# Deno from the npm registry (the package `deno` and its platform binary).
FROM node:20-bookworm-slim AS deno
ARG DENO_VERSION
RUN npm install -g --no-fund --no-audit "deno@${DENO_VERSION}" \
 && cp "$(node -p 'require(require("path").join(process.argv[1], "deno/install_api.cjs")).runInstall()' "$(npm root -g)")" /usr/local/bin/deno \
 && /usr/local/bin/deno --version

# The bundle: dist/loom.js, the worker bundles, the default config and the example plugins.
FROM deno AS build
WORKDIR /src
COPY deno.json deno.lock ./
COPY src/ src/
COPY scripts/ scripts/
COPY config/ config/
COPY plugins/ plugins/
ARG LOOM_BUILD_COMMIT=unknown
RUN LOOM_BUILD_COMMIT="${LOOM_BUILD_COMMIT}" deno run --allow-all scripts/bundle.ts --out /opt/loom

FROM debian:bookworm-slim
COPY --from=deno /usr/local/bin/deno /usr/local/bin/deno
COPY --from=build /opt/loom/ /opt/loom/
COPY --from=build /opt/loom/config/loom.yaml /etc/loom/loom.yaml
# DENO_DIR holds Deno's code cache: the only place Loom writes (mount an emptyDir there when the root
# filesystem is read-only).
RUN install -d -o 10001 -g 10001 /var/cache/loom
ENV DENO_DIR=/var/cache/loom \
    DENO_NO_UPDATE_CHECK=1 \
    NO_COLOR=1 \
    LOOM_HEALTH_URL=http://127.0.0.1:9091/health
USER 10001:10001
WORKDIR /etc/loom
EXPOSE 8080
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
  CMD ["/usr/local/bin/deno", "eval", "--no-config", "const r = await fetch(Deno.env.get('LOOM_HEALTH_URL')).catch(() => null); Deno.exit(r?.ok ? 0 : 1);"]
ENTRYPOINT ["/usr/local/bin/deno", "run", "--allow-all", "--unstable-net", "--v8-flags=--max-semi-space-size=4", "--no-config", "/opt/loom/loom.js"]
CMD ["run", "-c", "/etc/loom/loom.yaml"]
