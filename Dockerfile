# syntax=docker/dockerfile:1
# vigil gateway image: multi-stage (native modules are compiled in the build stage only), non-root,
# data on a volume, health checked through the unauthenticated /healthz endpoint.

FROM node:20-bookworm-slim AS build
WORKDIR /app
# better-sqlite3 and ssh2's optional crypto binding compile from source.
RUN apt-get update && apt-get install -y --no-install-recommends python3 make g++ && rm -rf /var/lib/apt/lists/*
COPY package.json package-lock.json ./
RUN npm ci --omit=dev
COPY bin ./bin
COPY src ./src
COPY proxies ./proxies
COPY recorder ./recorder
COPY config ./config
COPY tsconfig.json ./

FROM node:20-bookworm-slim
ENV NODE_ENV=production \
    VIGIL_LOG_JSON=1 \
    VIGIL_CONFIG=/etc/vigil/vigil.yaml
RUN groupadd --system vigil && useradd --system --gid vigil --home-dir /var/lib/vigil vigil \
 && mkdir -p /var/lib/vigil /etc/vigil && chown vigil:vigil /var/lib/vigil && chmod 0700 /var/lib/vigil
WORKDIR /app
COPY --from=build /app /app
# A minimal config: listeners on all interfaces, data on the volume. Mount your own at /etc/vigil/vigil.yaml.
RUN printf 'data_dir: /var/lib/vigil\napi:\n  listen: 0.0.0.0:8443\n' > /etc/vigil/vigil.yaml
USER vigil
VOLUME ["/var/lib/vigil"]
# ssh, postgres, mysql, API (HTTPS, mTLS; /healthz open)
EXPOSE 2222 6432 3307 8443
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["node", "-e", "require('https').get({host:'127.0.0.1',port:8443,path:'/healthz',rejectUnauthorized:false},r=>process.exit(r.statusCode===200?0:1)).on('error',()=>process.exit(1))"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["node", "/app/bin/vigil.js"]
CMD ["serve"]
