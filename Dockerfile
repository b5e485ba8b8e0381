# Ledgerline runtime image: one image for every process (api, worker, relay, migrate); the
# command picks the process. TypeScript runs through tsx (the sources import `.ts` paths), so
# the image ships src/ as is and needs no compile step.

ARG NODE_IMAGE=node:20-bookworm-slim

# --- dependencies: production only (tsx is a runtime dependency) ------------------------------
FROM ${NODE_IMAGE} AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund \
 && npm cache clean --force

# --- runtime ------------------------------------------------------------------------------------
FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production \
    PORT=3000
WORKDIR /app
# Files stay owned by root: the process (user node) can read its code but not change it.
COPY --from=deps /app/node_modules ./node_modules
COPY package.json tsconfig.json ./
COPY drizzle ./drizzle
COPY src ./src
USER node
EXPOSE 3000
CMD ["node", "--import", "tsx", "src/api/server.ts"]
