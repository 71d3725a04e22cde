# One image for every process of the platform; the command picks the service.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore
WORKDIR /app
COPY pyproject.toml ./
COPY common ./common
COPY services ./services
COPY gateway ./gateway
COPY ops ./ops
RUN pip install --no-cache-dir . && useradd --uid 10001 --no-create-home mantelzorg
USER 10001
# Overridden per service, e.g. services/registry/config.yml services.registry.service:RegistryService
CMD ["nameko", "run", "--config", "gateway/config.yml", "gateway.service:GatewayService"]
