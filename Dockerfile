# kubetally's image: `docker build -t kubetally:0.1.0 .` (the tag deploy/ uses).
#
# The builder turns the source into wheels (kubetally's and every dependency's); the final stage
# installs them from that folder only (no index, no compiler) and runs as a non-root user.

FROM python:3.11-slim-bookworm AS builder
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY src ./src
# Every dependency ships binary wheels for linux/amd64 and arm64: nothing is compiled.
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    KUBETALLY_CONFIG=/etc/kubetally/kubetally.yaml
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels /wheels/kubetally-*.whl \
    && groupadd --system --gid 10001 kubetally \
    && useradd --system --uid 10001 --gid kubetally --home-dir /var/lib/kubetally --create-home \
       --shell /usr/sbin/nologin kubetally
WORKDIR /var/lib/kubetally
USER 10001:10001
# The agent's /healthz, /readyz and /metrics; the server's API and dashboard.
EXPOSE 9090 8080
ENTRYPOINT ["kubetally"]
CMD ["--help"]
