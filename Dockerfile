# One image for every process of the platform; the command picks the service.
# Base images by tag and digest (the digest decides what is built; docs/operations.md, Images).
# The gateway's browser assets (NL Design System CSS, GraphiQL) from the committed lock file.
FROM node:20-slim@sha256:2cf067cfed83d5ea958367df9f966191a942351a2df77d6f0193e162b5febfc0 AS web-assets
WORKDIR /web
COPY gateway/web/package.json gateway/web/package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund

FROM python:3.11-slim@sha256:9c900dea9e8fb7e16277c179b555cc72d29a352dbc33cff48ad5a0412fd5bfc7
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore
WORKDIR /app
COPY pyproject.toml ./
COPY common ./common
COPY services ./services
COPY gateway ./gateway
COPY ops ./ops
COPY --from=web-assets /web/node_modules ./gateway/web/node_modules
RUN pip install --no-cache-dir . && useradd --uid 10001 --no-create-home mantelzorg
USER 10001
# Overridden per service, e.g. services/registry/config.yml services.registry.service:RegistryService
CMD ["nameko", "run", "--config", "gateway/config.yml", "gateway.service:GatewayService"]
