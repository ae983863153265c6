# syntax=docker/dockerfile:1
# vigil gateway image: multi-stage. The build stage compiles the native modules and the TypeScript
# (`npm run build` → dist/); the runtime stage holds only production dependencies, the compiled code and
# bin/, runs as a non-root user with data on a volume, and is health checked through the open /healthz.

FROM node:20-bookworm-slim AS build
WORKDIR /app
# better-sqlite3 and ssh2's optional crypto binding compile from source.
RUN apt-get update && apt-get install -y --no-install-recommends python3 make g++ && rm -rf /var/lib/apt/lists/*
COPY package.json package-lock.json ./
RUN npm ci
COPY tsconfig.json tsconfig.build.json ./
COPY bin ./bin
COPY app ./app
COPY src ./src
COPY proxies ./proxies
COPY recorder ./recorder
# Type-checked build (fails the image build on a type error), then only what production needs.
RUN npm run build && npm prune --omit=dev

FROM node:20-bookworm-slim
ENV NODE_ENV=production \
    VIGIL_LOG_JSON=1 \
    VIGIL_CONFIG=/etc/vigil/vigil.yaml
# A fixed uid/gid (10001): Kubernetes' runAsNonRoot can only check a numeric user, and volume
# ownership (fsGroup, the compose example's vigil-init) names it (deploy/).
RUN groupadd --system --gid 10001 vigil && useradd --system --uid 10001 --gid vigil --home-dir /var/lib/vigil vigil \
 && mkdir -p /var/lib/vigil /etc/vigil && chown vigil:vigil /var/lib/vigil && chmod 0700 /var/lib/vigil
WORKDIR /app
COPY --from=build /app/package.json /app/package-lock.json ./
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY bin ./bin
COPY config ./config
# A minimal config: listeners on all interfaces, data on the volume. Mount your own at /etc/vigil/vigil.yaml.
RUN printf 'data_dir: /var/lib/vigil\napi:\n  listen: 0.0.0.0:8443\n' > /etc/vigil/vigil.yaml
USER 10001:10001
VOLUME ["/var/lib/vigil"]
# ssh, postgres, mysql, API (HTTPS, mTLS; /healthz open)
EXPOSE 2222 6432 3307 8443
# /healthz is served on the API port without a client certificate; the gateway's certificate is its own CA's.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["node", "-e", "require('https').get({host:'127.0.0.1',port:8443,path:'/healthz',rejectUnauthorized:false},r=>process.exit(r.statusCode===200?0:1)).on('error',()=>process.exit(1))"]
STOPSIGNAL SIGTERM
# bin/vigil.js runs dist/ (present here; no sources and no tsx needed at run time).
ENTRYPOINT ["node", "/app/bin/vigil.js"]
CMD ["serve"]
