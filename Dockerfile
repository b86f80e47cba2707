# kbwatch worker image: `docker build -t kbwatch .`
# Two stages: wheels are built with the build tools, the final stage gets only
# the installed packages, runs as an unprivileged user and checks /livez.
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
RUN python -m venv /opt/kbwatch
COPY pyproject.toml README.md ./
COPY streams ./streams
# rocksdict: the RocksDB table store (KBWATCH_STORE=rocksdb://) for state bigger than memory.
RUN /opt/kbwatch/bin/pip install --no-cache-dir ".[rocksdb]"

FROM ${PYTHON_IMAGE}
RUN groupadd --system --gid 10001 kbwatch \
    && useradd --system --uid 10001 --gid kbwatch --home-dir /var/lib/kbwatch --create-home kbwatch
COPY --from=build /opt/kbwatch /opt/kbwatch
ENV PATH=/opt/kbwatch/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    KBWATCH_DATA_DIR=/var/lib/kbwatch \
    KBWATCH_WEB_HOST=0.0.0.0 \
    KBWATCH_WEB_PORT=6066
USER 10001:10001
WORKDIR /var/lib/kbwatch
VOLUME ["/var/lib/kbwatch"]
EXPOSE 6066
HEALTHCHECK --interval=15s --timeout=3s --start-period=90s --retries=3 \
    CMD ["python", "-c", "import urllib.request, sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:6066/livez', timeout=2).status != 200)"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["kbwatch"]
CMD ["worker"]
