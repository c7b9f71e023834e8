# appnetd sidecar image. Run with --network host --cap-add NET_ADMIN --device /dev/net/tun
# (and -v /run/netns:/run/netns to attach instances in other network namespaces).
FROM node:20-bookworm-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ libsodium-dev libpcap-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/appnet
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund
COPY native ./native
RUN npx --no-install node-gyp rebuild --directory native

FROM node:20-bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends iproute2 libsodium23 libpcap0.8 \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/appnet
COPY --from=build /opt/appnet/node_modules ./node_modules
COPY --from=build /opt/appnet/native/build/Release/appnet.node ./native/build/Release/appnet.node
COPY package.json ./
COPY bin ./bin
COPY dataplane ./dataplane
COPY control ./control
# The launchers run JavaScript bundles (bin/bundled.js); build them into the image, after the sources.
RUN node bin/bundled.js
ENTRYPOINT ["/opt/appnet/bin/appnetd.js"]
CMD ["--config", "/etc/appnet/appnetd.json"]
